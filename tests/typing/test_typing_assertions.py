"""Runs mypy on ``tests/typing`` so that the static typing proofs are checked with the suite
(and by ``mypy --strict tests/typing`` in CI): the decorators keep the signatures of the
functions they wrap, the clients' commands keep redis-py's types.

The same mypy run also checks a deliberately wrong file, so that a mypy that silently checks
nothing (a wrong path, a config that skips the folder) fails this test instead of passing it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(__file__).resolve().parent

WRONG = '''
from faulttol import Retry
from typing_extensions import assert_type


@Retry("wrong")
def twice(n: int) -> int:
    return 2 * n


assert_type(twice(1), str)
twice("1")
'''


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_typing_proofs_pass_mypy_strict(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_types.py"
    wrong.write_text(WRONG, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(ROOT / ".mypy_cache"), str(FOLDER), str(wrong)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert [line for line in errors if "wrong_types.py" not in line] == [], proc.stdout
    wrong_lines = sorted({int(line.split(":")[1]) for line in errors
                          if "wrong_types.py" in line})
    expected = [n for n, line in enumerate(WRONG.splitlines(), start=1)
                if line.startswith(("assert_type(", "twice("))]
    assert len(expected) == 2 and wrong_lines == expected, proc.stdout
