"""The README stays true: its runnable examples run, and it stands on its own.

A code block is runnable when the line right before its ```python fence is
``<!-- runnable -->``; each one runs in a fresh interpreter from the repository root.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RUNNABLE = re.compile(r"^<!-- runnable -->\n```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
MAX_LINES = 450
# What a user-facing README must not point at: files outside the repository, internal notes.
# Names of the team's material outside the repository, assembled here so that this file does
# not cite them either.
FORBIDDEN = tuple(
    "".join(parts)
    for parts in (
        ("../", "shared"),
        ("REFER", "ENCE.md"),
        ("DES", "IGN.md"),
        ("000", "_"),
        ("seeds", "/"),
    )
)
COMMIT_HASH = re.compile(r"`[0-9a-f]{7,40}`")


def runnable_blocks() -> list[str]:
    return RUNNABLE.findall(README.read_text())


def test_readme_has_runnable_examples():
    assert runnable_blocks(), "README.md has no <!-- runnable --> python block"


@pytest.mark.parametrize("index", range(len(runnable_blocks())))
def test_readme_runnable_block_runs(index):
    code = runnable_blocks()[index]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, (
        f"block {index}:\n{code}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    )


def test_readme_is_self_contained_and_short():
    text = README.read_text()
    for needle in FORBIDDEN:
        assert needle not in text, f"README.md mentions {needle!r}"
    hashes = COMMIT_HASH.findall(text)
    assert not hashes, f"README.md cites commit hashes: {hashes}"
    lines = len(text.splitlines())
    assert lines < MAX_LINES, f"README.md has {lines} lines (limit {MAX_LINES})"
