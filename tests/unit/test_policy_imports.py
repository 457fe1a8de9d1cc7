"""The memory-store policy is built without redis-py (about 0.1 s of every start-up).

`build_policy` asks whether its store is a Redis cap store (Redis-held lists, the guard
against unread sets: tests/integration/test_policy_redis_lists.py) without importing
the Redis module unless something else did.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


def test_building_the_memory_store_policy_loads_no_redis():
    code = (
        "import sys; from keymoment.config import load_rules;"
        "from keymoment.policy import build_policy;"
        f"build_policy(load_rules({str(EXAMPLE)!r}));"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'redis'];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
