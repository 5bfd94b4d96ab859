"""Heap allocator selection for the controller process (jemalloc returns a freed XLA
executable's memory to the OS, glibc's fragmented arenas kept it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mppi_ros.realtime import memory as allocator
from mppi_ros.realtime.memory import allocator_environment, heap_allocator, jemalloc_library


def test_glibc_adds_nothing_and_an_unknown_allocator_lists_the_valid_ones():
    assert allocator_environment("glibc") == {}
    with pytest.raises(ValueError, match="auto, glibc, jemalloc"):
        allocator_environment("tcmalloc")


def test_jemalloc_is_preloaded_from_the_named_library(tmp_path, monkeypatch):
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    monkeypatch.setenv("MPPI_ROS_JEMALLOC", str(library))
    monkeypatch.setenv("LD_PRELOAD", "/opt/other.so")
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    env = allocator_environment("jemalloc")
    assert env["LD_PRELOAD"] == f"{library} /opt/other.so"  # others stay preloaded
    assert env["MALLOC_CONF"] == "background_thread:true"
    assert allocator_environment("auto") == env
    monkeypatch.setenv("MALLOC_CONF", "narenas:2")
    assert allocator_environment("jemalloc")["MALLOC_CONF"] == "narenas:2"  # the user's wins


def test_jemalloc_without_the_library_fails_and_auto_falls_back_to_glibc(monkeypatch):
    monkeypatch.setenv("MPPI_ROS_JEMALLOC", "/nonexistent/libjemalloc.so.2")
    monkeypatch.setattr(allocator, "_JEMALLOC_PATHS", ())
    with pytest.raises(ValueError, match="apt install libjemalloc2"):
        allocator_environment("jemalloc")
    assert allocator_environment("auto") == {}


def test_this_process_runs_glibc_and_returns_its_free_heap():
    assert heap_allocator() == "glibc"
    assert allocator.release_free_heap()


@pytest.mark.skipif(jemalloc_library() is None, reason="libjemalloc2 is not installed")
def test_a_child_started_with_jemalloc_reports_and_purges_it():
    code = (
        "from mppi_ros.realtime.memory import heap_allocator, release_free_heap;"
        "print(heap_allocator(), release_free_heap())"
    )
    env = {**os.environ, **allocator_environment("jemalloc")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["jemalloc", "True"]
