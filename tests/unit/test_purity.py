"""The engine in triggers/ stays pure: no framework, store, file, process, network or clock."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

TRIGGERS = Path(__file__).resolve().parents[2] / "triggers"
FORBIDDEN_MODULES = {
    "bytewax", "redis", "orjson", "os", "io", "pathlib", "time", "socket", "subprocess", "zoneinfo",
    "random", "secrets", "shutil", "tempfile", "glob", "sys", "threading", "multiprocessing",
    "asyncio", "urllib", "http", "requests", "confluent_kafka", "importlib", "builtins", "logging",
    "pickle", "sqlite3", "gzip", "keymoment",
}  # fmt: skip
FORBIDDEN_CALLS = {"open", "input", "print", "eval", "exec", "__import__", "compile", "breakpoint"}
CLOCK_METHODS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "fromtimestamp"}


def _sources() -> list[Path]:
    files = sorted(TRIGGERS.glob("*.py"))
    assert len(files) >= 10, f"expected the engine modules under {TRIGGERS}"
    return files


def violations(tree: ast.AST) -> list[str]:
    """Every forbidden import, builtin call or clock call in one module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{func.id}()")
            elif isinstance(func, ast.Attribute) and func.attr in CLOCK_METHODS:
                found.append(f".{func.attr}()")
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_engine_module_is_pure(path):
    """No module of triggers/ imports I/O, clocks or frameworks, nor calls open() or now()."""
    tree = ast.parse(path.read_text(), str(path))
    assert violations(tree) == [], f"{path.name} is not pure"


@pytest.mark.parametrize(
    "source",
    ["import os", "from bytewax import operators", "import redis.asyncio", "from time import time",
     "import orjson as j", "x = open('f')", "datetime.now(UTC)", "datetime.utcnow()",
     "from keymoment.connectors import wire", "date.today()"],
)  # fmt: skip
def test_the_scan_catches_each_kind_of_impurity(source):
    """The checker itself flags every forbidden form (so the test above can fail)."""
    assert violations(ast.parse(source))


def test_importing_the_engine_loads_no_io_framework():
    """A fresh interpreter importing the engine has loaded no bytewax, redis, orjson, connectors."""
    code = (
        "import sys, keymoment.triggers.engine, keymoment.triggers.ruleset;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('bytewax', 'redis', 'orjson')"
        " or m.startswith('keymoment.connectors')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
