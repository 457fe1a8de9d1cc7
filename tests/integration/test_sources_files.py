"""JSONL file source: plain and gzip files as partitions, exact positions, resume mid-file."""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow, Stream
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from keymoment.connectors.files import Item, JsonlFileSink, JsonlFileSource
from keymoment.flows.outputs import output
from tests.support.items import flat, pairs


def _write(path: Path, lines: list[bytes]) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _events(prefix: str, n: int) -> list[bytes]:
    return [orjson.dumps({"event_id": f"{prefix}{i}"}) for i in range(n)]


def _run(source: JsonlFileSource) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    flow = Dataflow("files")
    op.output("out", _pairs(op.input("in", flow, source)), TestingSink(got))
    run_main(flow)
    return got


def _pairs(items: Stream[Item]) -> Stream[tuple[str, bytes]]:
    """Each `Lines` item as its `(path:LINE, payload)` pairs."""
    return op.flat_map("pairs", items, flat)


def test_plain_and_gzip_files_are_read_as_partitions_with_line_positions(tmp_path: Path) -> None:
    """Every non-blank line of a plain and a gzip file comes out once, labelled `path:LINE`."""
    plain = _write(tmp_path / "a.jsonl", [b'{"n":1}', b"", b'{"n":2}'])
    packed = _write(tmp_path / "b.jsonl.gz", _events("b", 2500))
    got = _run(JsonlFileSource([plain, packed], batch_size=100))
    mine = [item for item in got if item[0].startswith(str(plain))]
    assert mine == [(f"{plain}:1", b'{"n":1}'), (f"{plain}:3", b'{"n":2}')]
    theirs = [item for item in got if item[0].startswith(str(packed))]
    assert theirs == [(f"{packed}:{i + 1}", line) for i, line in enumerate(_events("b", 2500))]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_partition_resumes_after_the_last_emitted_line(tmp_path: Path, name: str) -> None:
    """A partition rebuilt from a mid-file snapshot continues with the next line, none repeated."""
    path = _write(tmp_path / name, _events("e", 10) + [b"  ", b'{"tail":1}'])
    source = JsonlFileSource(path, batch_size=4)
    first = source.build_part("in", str(path), None)
    head = first.next_batch() + first.next_batch()
    resumed = source.build_part("in", str(path), first.snapshot())
    rest = []
    with pytest.raises(StopIteration):
        while True:
            rest += resumed.next_batch()
    found = pairs(head + rest)
    assert [p for p, _ in found] == [f"{path}:{i}" for i in [*range(1, 11), 12]]
    assert found[-1] == (f"{path}:12", b'{"tail":1}')


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    """A missing input file is refused when the source is built, naming the file."""
    with pytest.raises(ValueError, match="input file not found: .*nope.jsonl"):
        JsonlFileSource(tmp_path / "nope.jsonl")


class _CrashOnce:
    """Raises on one position the first time it is seen: a crash in the middle of a file."""

    def __init__(self, position: str, flag: Path):
        self.position, self.flag = position, flag

    def __call__(self, item: tuple[str, bytes]) -> dict:
        if item[0] == self.position and not self.flag.exists():
            self.flag.touch()
            raise RuntimeError("injected crash")
        return {"position": item[0], "event": orjson.loads(item[1])["event_id"]}


def test_crash_and_resume_gives_every_line_once_in_the_file_sink(tmp_path: Path) -> None:
    """After a crash mid-gzip-file and a recovery run, the JSONL sink holds every line once."""
    path = _write(tmp_path / "in.jsonl.gz", _events("x", 500))
    out, db = tmp_path / "out.jsonl", tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)

    def flow() -> Dataflow:
        f = Dataflow("crash")
        items = _pairs(op.input("in", f, JsonlFileSource(path, batch_size=7)))
        parsed = op.map("parse", items, _CrashOnce(f"{path}:321", tmp_path / "crashed"))
        output("out", parsed, JsonlFileSink(out))
        return f

    with pytest.raises(Exception, match="mapper"):
        run_main(flow(), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    partial = out.read_bytes().splitlines()
    assert 0 < len(partial) < 321
    run_main(flow(), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    events = [orjson.loads(line)["event"] for line in out.read_bytes().splitlines()]
    assert events == [f"x{i}" for i in range(500)]


def test_two_workers_read_each_file_once_and_share_one_output_file(tmp_path: Path) -> None:
    """With two workers, each file partition is read by one worker and the sink gets all lines."""
    from bytewax.testing import cluster_main

    paths = [_write(tmp_path / f"p{i}.jsonl", _events(f"p{i}-", 700)) for i in range(3)]
    out = tmp_path / "out.jsonl"
    flow = Dataflow("two-workers")
    items = _pairs(op.input("in", flow, JsonlFileSource(paths, batch_size=50)))
    output("out", op.map("parse", items, lambda item: orjson.loads(item[1])), JsonlFileSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    got = sorted(orjson.loads(line)["event_id"] for line in out.read_bytes().splitlines())
    assert got == sorted(f"p{i}-{n}" for i in range(3) for n in range(700))
