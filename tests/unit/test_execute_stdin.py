"""execute.run feeds a child's stdin from chunks (a dump streamed to a confined psql): all of it
then end-of-input; an error producing the chunks kills the child before it sees end-of-input."""

from __future__ import annotations

import pytest

from backupd.process import execute


def test_chunks_reach_the_child_then_end_of_input():
    done = execute.run(["cat"], stdin=iter([b"one\n", b"two\n"] * 1000), timeout=30)
    assert done.returncode == 0 and done.stdout == b"one\ntwo\n" * 1000


def test_a_child_that_stops_reading_ends_the_feed_without_hanging():
    done = execute.run(["head", "-c", "1"], stdin=iter([b"x" * 65536] * 200), timeout=30)
    assert done.returncode == 0 and done.stdout == b"x" and not done.timed_out


def test_a_failing_producer_kills_the_child_before_end_of_input_and_is_raised():
    def chunks():
        yield b"partial\n"
        raise OSError("the dump vanished")

    # a child that would report success on end-of-input: it must not get that far
    with pytest.raises(OSError, match="vanished"):
        execute.run(["sh", "-c", "cat >/dev/null && echo took-it-whole"], stdin=chunks(), timeout=30)


def test_the_timeout_stops_a_child_that_never_reads():
    done = execute.run(["sleep", "30"], stdin=iter([b"x" * (1 << 20)] * 8), timeout=1)
    assert done.timed_out
