"""A rules version as the rollout machinery carries it: the validated file and its exact bytes.

The bytes travel with the model so a recovery snapshot, the audit log and a
`--rollout-log` replay can rebuild exactly the version that was in force
(snapshots hold plain data: the bytes and the paths, re-validated on load).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from keymoment.config import RulesFile, parse_rules


def digest_of(text: bytes) -> str:
    return "sha256:" + hashlib.sha256(text).hexdigest()


@dataclass(frozen=True)
class RulesVersion:
    """One validated version: `path` gives the format and where list paths resolve."""

    rules: RulesFile
    text: bytes
    source: str  # the file path or URL it came from, for messages and the audit log
    path: str

    @property
    def digest(self) -> str:
        return digest_of(self.text)

    @property
    def version(self) -> int | str:
        return self.rules.version

    @classmethod
    def parse(cls, source: str, text: bytes, path: str) -> RulesVersion:
        """Raises `RulesError` with every problem."""
        return cls(parse_rules(source, text, Path(path)), text, source, path)

    @classmethod
    def read(cls, path: str) -> RulesVersion:
        return cls.parse(path, Path(path).read_bytes(), path)

    def plain(self) -> dict[str, Any]:
        return {"source": self.source, "path": self.path, "text": self.text}

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        """Between processes and into snapshots as plain data, validated again on arrival."""
        return (RulesVersion.from_plain, (self.plain(),))

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> RulesVersion:
        return cls.parse(data["source"], data["text"], data["path"])


@dataclass(frozen=True)
class Switch:
    """`version` takes effect when the watermark reaches `effective_at` (docs/rollout.md)."""

    effective_at: datetime
    version: RulesVersion

    def plain(self) -> dict[str, Any]:
        return {"effective_at": self.effective_at, "version": self.version.plain()}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> Switch:
        return cls(data["effective_at"], RulesVersion.from_plain(data["version"]))
