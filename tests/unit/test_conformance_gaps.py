"""A guideline gap in the policy is a conformance finding in the evidence report (M1), not a stopped backup."""

from datetime import datetime, timezone

from backupd.actions.evidence_conformance import _m1

NOW = datetime.now(timezone.utc)


def _target(name, category):
    return {"name": name, "category": category, "frequency": "1d",
            "backups": {"last_ok": {"time": NOW.isoformat(), "seq": 1}}}


def test_missing_required_category_is_not_met():
    item = _m1([_target("prog", "system_program"), _target("db", "container_data")], NOW)
    assert item["status"] == "not met" and "no target of required category: logs" in item["why"]


def test_all_required_categories_backed_up_is_met():
    item = _m1([_target("p", "system_program"), _target("d", "container_data"), _target("l", "logs")], NOW)
    assert item["status"] == "met"
