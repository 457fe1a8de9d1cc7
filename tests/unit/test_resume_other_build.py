"""A recovery snapshot whose pickled classes changed shape is one clear line, not pickle's words.

The policy's part of a shard snapshot is pickled whole: a build where a class
became a msgspec struct (as `Candidate` did) or went away cannot load a store
an older build wrote. `flows.snapshots.unpickled` says which it is and what
to do; `resume` prints that line and exits 2.
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
import types

import msgspec
import pytest

from keymoment.flows import snapshots
from keymoment.state.snapshot_codec import CodecError


@pytest.fixture
def old_build(monkeypatch: pytest.MonkeyPatch) -> tuple[types.ModuleType, bytes]:
    """A module whose class `C` was a frozen dataclass when this was pickled."""
    module = types.ModuleType("km_old_build")
    monkeypatch.setitem(sys.modules, module.__name__, module)

    @dataclasses.dataclass(frozen=True)
    class C:
        a: int

    C.__module__, C.__qualname__ = module.__name__, "C"
    module.C = C  # type: ignore[attr-defined]
    return module, pickle.dumps({"policy": {"parked": [C(1)]}})


def test_a_class_now_a_msgspec_struct(old_build: tuple[types.ModuleType, bytes]) -> None:
    module, data = old_build

    class C(msgspec.Struct, frozen=True):
        a: int

    module.C = C  # type: ignore[attr-defined]
    with pytest.raises(CodecError, match="written by another keymoment build.*UnpicklingError"):
        snapshots.unpickled(data)


def test_a_class_gone(old_build: tuple[types.ModuleType, bytes]) -> None:
    module, data = old_build
    del module.C  # type: ignore[attr-defined]
    with pytest.raises(CodecError, match="new recovery directory"):
        snapshots.unpickled(data)


def test_resume_prints_one_line_and_exits_2(
    old_build: tuple[types.ModuleType, bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module, data = old_build
    del module.C  # type: ignore[attr-defined]

    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(snapshots.os, "_exit", exit_)
    with pytest.raises(SystemExit) as stopped:
        snapshots.resume(None, data, None)  # type: ignore[arg-type]  # never reached
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("keymoment: cannot resume from the recovery")
    assert "another keymoment build" in err[0]
