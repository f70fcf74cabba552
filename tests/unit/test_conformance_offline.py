"""Conformance G6 (offline copies on rotated media): met only with a read-back-verified rotation whose
newest generation is inside the target's offline.max_age; every rotation is in the report."""

from datetime import datetime, timedelta, timezone

from backupd.actions import evidence_report
from backupd.actions.evidence_conformance import _offline
from backupd.render import evidence_html

NOW = datetime.now(timezone.utc)
WEEK = 8 * 86400


def _rot(seq, days_ago, status="ok", read_back="ok", medium="weekly-a"):
    return {"seq": seq, "time": NOW.isoformat(), "medium": medium, "uuid": "u", "status": status,
            "read_back": read_back, "newest_time": (NOW - timedelta(days=days_ago)).isoformat(), "generations": 2}


def _target(*rots, max_age=WEEK):
    return {"name": "docs", "offline_max_age_seconds": max_age, "offline_rotations": list(rots)}


def test_offline_item_is_met_only_with_a_verified_rotation_inside_its_age():
    assert _offline([{"name": "x", "offline_max_age_seconds": None}], NOW)["status"] == "not evidenced"
    assert _offline([_target()], NOW)["status"] == "not met"
    assert _offline([_target(_rot(3, 9))], NOW)["status"] == "not met"  # too old
    assert _offline([_target(_rot(4, 1, "failed", "damaged"))], NOW)["status"] == "not met"  # not read back
    assert _offline([_target(_rot(5, 1, "refused", "not run"))], NOW)["status"] == "not met"
    item = _offline([_target(_rot(3, 9), _rot(6, 1, medium="weekly-b"))], NOW)
    assert item["status"] == "met" and item["seqs"] == [3, 6] and "weekly-b" in item["why"]


def test_every_rotation_of_a_target_is_in_the_report_and_its_html():
    recs = [{"seq": 7, "time": NOW.isoformat(), "kind": "media-sync",
             "data": {"medium": "weekly-c", "uuid": "u", "status": "ok", "read_back": "ok", "planned": ["docs"],
                      "targets": {"docs": {"generations": 1, "newest_time": NOW.isoformat()}}}},
            {"seq": 8, "time": NOW.isoformat(), "kind": "media-sync",
             "data": {"medium": "stranger", "status": "refused", "read_back": "not run", "planned": ["docs"],
                      "targets": {}}},
            {"seq": 9, "time": NOW.isoformat(), "kind": "media-sync",
             "data": {"medium": "weekly-a", "status": "ok", "read_back": "ok", "planned": ["other"],
                      "targets": {"other": {"generations": 1, "newest_time": NOW.isoformat()}}}}]
    got = evidence_report.activity(evidence_report.by_target(recs), evidence_report.BackupTally(), "docs")
    assert [(r["seq"], r["medium"], r["read_back"]) for r in got["offline_rotations"]] == \
        [(7, "weekly-c", "ok"), (8, "stranger", "not run")]
    html = evidence_html._rotations({"offline_max_age_seconds": WEEK, **got})
    assert "weekly-c" in html and "stranger" in html and "読み戻し" in html
