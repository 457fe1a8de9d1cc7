"""The versions a replay switches to, and when: `--rollout T=FILE` and `--rollout-log AUDIT`.

A replay with a schedule applies each version from watermark `T` on with the
same carry-over as a live reload, so `backtest` and `run --clock event` with
the same schedule decide the same, and a schedule read from the live audit
log reproduces what the live engine decided.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson

from keymoment.config import RulesError

from .audit import APPLIED
from .versions import RulesVersion, Switch


class RolloutError(ValueError):
    """A schedule that cannot be used; the message is one line for the operator."""


def parse_at(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RolloutError(f"--rollout {text!r}: expected an RFC 3339 time") from None
    if at.tzinfo is None:
        raise RolloutError(f"--rollout {text!r}: the time needs an offset (Z or +01:00)")
    return at


def rollout(arg: str) -> Switch:
    """`2026-03-01T00:00:00Z=V8.yaml` -> the switch, with the file validated whole."""
    at_text, sep, path = arg.partition("=")
    if not sep or not path:
        raise RolloutError(
            f"--rollout {arg!r}: expected TIME=FILE, like 2026-03-01T00:00:00Z=v8.yaml"
        )
    at = parse_at(at_text)
    try:
        return Switch(at, RulesVersion.read(path))
    except OSError as exc:
        raise RolloutError(f"--rollout {path}: cannot read the file: {exc.strerror}") from None
    except RulesError as exc:
        raise RolloutError(f"--rollout {path}: " + "; ".join(exc.problems)) from None


def from_audit(path: str) -> list[Switch]:
    """Every applied reload of an audit log (JSONL), at the watermark it took effect."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise RolloutError(f"--rollout-log {path}: cannot read the file: {exc.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        try:
            rec = orjson.loads(line) if line.strip() else {}
        except orjson.JSONDecodeError:
            raise RolloutError(f"--rollout-log {path}:{n}: not a JSON audit record") from None
        if rec.get("result") != APPLIED:
            continue
        try:
            version = RulesVersion.parse(rec["source"], rec["content"].encode(), rec["source"])
            out.append(Switch(parse_at(rec["effective_at"]), version))
        except (KeyError, AttributeError, RulesError, RolloutError):
            raise RolloutError(f"--rollout-log {path}:{n}: not a usable applied record") from None
    return out


def schedule(rollouts: list[str], logs: list[str]) -> list[Switch]:
    """All switches in watermark order; two at the same time are a mistake."""
    switches = [rollout(a) for a in rollouts] + [s for p in logs for s in from_audit(p)]
    switches.sort(key=lambda s: s.effective_at)
    for a, b in zip(switches, switches[1:], strict=False):
        if a.effective_at == b.effective_at:
            raise RolloutError(f"two versions take effect at {a.effective_at.isoformat()}")
    return switches
