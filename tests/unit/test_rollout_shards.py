"""Property: with a rollout, shard count and batch size never change the decisions.

The flow's own pieces without Bytewax: the `Stamper` cuts the stream into
batches for N shards, each `Shard` (its own engine and policy, as in the
flow) processes its batches, then every shard finishes. The decisions must be
those of the backtest's one-shard replay with the same `--rollout`, for any
N, any batch size and any switch time. (Processes: the two-process test in
tests/integration/test_rollout_flow.py.)
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keymoment.connectors.generator import Generator
from keymoment.flows.replay import Replay
from keymoment.flows.shard import Shard
from keymoment.flows.stamp import Stamper
from keymoment.flows.versioning import Versions
from keymoment.policy import build_policy
from keymoment.rollout.versions import RulesVersion, Switch
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
GEN = Generator(seed=5, customers=40, days=90)
PAYLOADS = list(GEN.iter_bytes())
PROFILES = {p["customer_id"]: CustomerProfile.model_validate(p) for p in GEN.profiles()}
TIMES = sorted({orjson.loads(p)["occurred_at"] for p in PAYLOADS if b"occurred_at" in p})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("shards")
    shutil.copytree(EXAMPLE.parent / "lists", out / "lists")
    text = EXAMPLE.read_text()
    (out / "v7.yaml").write_text(text)
    v8 = text.replace("version: 7", "version: 8", 1).replace(
        "min_amount: 50000", "min_amount: 20000", 1
    )
    v8 = v8.replace("    only_first: true", "    only_first: false", 1)
    (out / "v8.yaml").write_text(v8)
    (out / "events.jsonl").write_bytes(b"\n".join(PAYLOADS) + b"\n")
    read = RulesVersion.read
    return {"v7": read(str(out / "v7.yaml")), "v8": read(str(out / "v8.yaml")),
            "events": str(out / "events.jsonl")}  # fmt: skip


def canonical(records: list[dict]) -> list[bytes]:
    plain = [{k: v for k, v in r.items() if k != "decided_at"} for r in records]
    return sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in plain)


def versions(files: dict, at: datetime) -> Versions:
    return Versions(files["v7"], [Switch(at, files["v8"])])


def replayed(files: dict, at: datetime) -> list[bytes]:
    v7 = files["v7"]
    versions = Versions(v7, [Switch(at, files["v8"])])
    replay = Replay(v7.rules, PROFILES, build_policy(v7.rules), versions=versions)
    return canonical(
        [r for out in replay.outputs([files["events"]]) for r in out.decision_records()]
    )


def sharded(files: dict, at: datetime, count: int, size: int) -> list[bytes]:
    v7 = files["v7"]
    shards = [
        Shard(Engine(v7.rules), build_policy(v7.rules), PROFILES, None, versions(files, at))
        for _ in range(count)
    ]  # fmt: skip
    stamper = Stamper(count, v7.rules.engine.allowed_lateness, v7.rules.engine.max_future)
    raw = [(f"f:{i}", p) for i, p in enumerate(PAYLOADS)]
    out = []
    for start in range(0, len(raw), size):
        for shard, (_, batch) in zip(shards, stamper(raw[start : start + size]), strict=True):
            out += shard.process(batch).decision_records()
    for shard in shards:
        out += shard.finish(None).decision_records()
    return canonical(out)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.integers(1, 6),
    st.sampled_from([1, 7, 64, 1000]),
    st.sampled_from(TIMES[len(TIMES) // 5 :: 97]),
)
def test_shards_and_batch_sizes_never_change_a_rollout(files, count, size, at_text):
    """N shards fed batches of any size decide what the one-shard replay decides."""
    at = datetime.fromisoformat(at_text)
    expected = replayed(files, at)
    assert {orjson.loads(d)["rule_version"] for d in expected} == {7, 8}
    assert sharded(files, at, count, size) == expected
