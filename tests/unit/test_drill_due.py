"""`backupd drill --due`: which drill kind a target's schedule wants, from the drills it passed."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from backupd.drill.due import due_kind

DAY = 86400.0
NOW = 1_000 * DAY
SCHEDULE = SimpleNamespace(sample=timedelta(days=30), full=timedelta(days=90))


def _run(kind: str, days_ago: float, status: str = "pass") -> dict:
    return {"status": status, "finished": NOW - days_ago * DAY, "started": NOW - days_ago * DAY - 60,
            "detail": {"kind": kind}}


@pytest.mark.parametrize("runs, expected", [
    ([], "full"),                                                  # never drilled: the full one first
    ([_run("full", 10)], None),                                    # a full drill also counts as a sample
    ([_run("full", 40)], "sample"),
    ([_run("sample", 5), _run("full", 40)], None),
    ([_run("sample", 5), _run("full", 95)], "full"),               # the full period passed
    ([_run("full", 1, "fail"), _run("full", 95)], "full"),         # a failed drill is tried again
    ([_run("full", 1, "unavailable"), _run("sample", 31), _run("full", 60)], "sample"),
    ([_run("full", 1, "warn")], None),                             # WARN passed (within 80-100 % of the RTO)
])
def test_due_kind(runs, expected):
    assert due_kind(SCHEDULE, runs, NOW) == expected


def test_a_kind_scheduled_never_is_never_due():
    assert due_kind(SimpleNamespace(sample=None, full=None), [], NOW) is None
    assert due_kind(SimpleNamespace(sample=timedelta(days=1), full=None), [], NOW) == "sample"


def test_due_excludes_full_and_snapshot(tmp_path):
    from tests.unit.cli_helper import cli

    code, doc = cli("drill", "--due", "--full", "--config", str(tmp_path / "none.yaml"))
    assert code == 2 and "--due chooses the kind" in doc["error"]
