"""backupd forget: one snapshot listing per destination serves every target's future-date guard and its
orphaned companions; the orphans go in one forget per destination."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from backupd.actions import retention
from backupd.engine.forget import KEEP_RULES, ForgetResult
from backupd.engine.snapshots import Snapshot
from backupd.errors import DependencyError

NOW = datetime.now(timezone.utc)


def snap(sid: str, *tags: str, days_ago: float = 1.0) -> Snapshot:
    return Snapshot(id=sid * 8, short_id=sid * 2, time=NOW - timedelta(days=days_ago), host="h", paths=[],
                    tags=list(tags))


def target(name: str, dests=("worm",)):
    retention_rules = SimpleNamespace(**{**{r: 0 for r in KEEP_RULES}, "keep_daily": 7},
                                      min_history=timedelta(weeks=6))
    return SimpleNamespace(name=name, destinations=list(dests), retention=retention_rules)


class Engine:
    """A fake restic: one repository's snapshots, and every call made."""

    def __init__(self, listing: list[Snapshot], removed: set[str], fail_list: bool = False):
        self.listing, self.removed, self.fail_list = listing, removed, fail_list
        self.lists, self.forgets, self.forgotten_ids = [], [], []

    def list_snapshots(self, repo, *, tags=None, host=None, ids=None):
        self.lists.append((repo, tags, host))
        if self.fail_list:
            raise DependencyError("storage unreachable")
        return [s for s in self.listing if all(t in s.tags for t in tags or [])]

    def forget(self, repo, keep, keep_within, *, tags, host, dry_run=False):
        self.forgets.append(tags)
        mine = [s.id for s in self.listing if all(t in s.tags for t in tags)]
        return ForgetResult(keep=[i for i in mine if i not in self.removed],
                            remove=[i for i in mine if i in self.removed])

    def forget_ids(self, repo, ids):
        if ids:
            self.forgotten_ids.append(list(ids))


@pytest.fixture
def fake(monkeypatch):
    def install(listing, removed=(), fail_list=False):
        engine = Engine(listing, set(removed), fail_list)
        monkeypatch.setattr(retention.restic_snapshots, "list_snapshots", engine.list_snapshots)
        monkeypatch.setattr(retention.restic_forget, "forget", engine.forget)
        monkeypatch.setattr(retention.restic_forget, "forget_ids", engine.forget_ids)
        monkeypatch.setattr(retention, "repository", lambda cfg, name, dest: f"repo:{name}")
        monkeypatch.setattr(retention.incident, "guard", lambda *a, **k: None)
        monkeypatch.setattr(retention.evidence, "record", lambda *a, **k: None)
        return engine
    return install


def policy_set(*targets):
    return SimpleNamespace(targets=list(targets), destinations={"worm": object(), "far": object()},
                           target=lambda name: next(t for t in targets if t.name == name))


CFG = SimpleNamespace(host="h")


def test_one_listing_serves_every_target_and_orphans_go_in_one_forget(fake):
    listing = [
        snap("a", "backupd", "target=files"), snap("b", "backupd", "target=files"),
        snap("c", "backupd-manifest", "target=files", f"of={'a' * 8}"),  # of a forgotten generation
        snap("d", "backupd-manifest", "target=files", f"of={'b' * 8}"),  # of a kept one
        snap("e", "backupd", "target=db"), snap("f", "backupd-manifest", "target=db", f"of={'e' * 2}"),
        snap("g", "backupd", "target=other"),
    ]
    engine = fake(listing, removed={"a" * 8, "e" * 8})
    results = retention.run(CFG, policy_set(target("files"), target("db")))
    assert len(engine.lists) == 1, "one listing per destination, not two per target"
    assert engine.forgets == [["backupd", "target=files"], ["backupd", "target=db"]]
    assert engine.forgotten_ids == [["c" * 8, "f" * 8]], "the companions of forgotten generations, in one call"
    assert [(r["target"], r["status"], r["manifests_removed"]) for r in results] == [
        ("files", "ok", 1), ("db", "ok", 1)]


def test_a_future_snapshot_refuses_its_target_only(fake):
    listing = [snap("a", "backupd", "target=files", days_ago=-30), snap("b", "backupd", "target=db")]
    engine = fake(listing)
    files, db = retention.run(CFG, policy_set(target("files"), target("db")))
    assert files["status"] == "failed" and "future" in files["error"]
    assert db["status"] == "ok" and engine.forgets == [["backupd", "target=db"]]


def test_results_keep_target_order_across_destinations_and_a_dead_one_fails_its_targets(fake, monkeypatch):
    engine = fake([snap("a", "backupd", "target=files")])
    listed = engine.list_snapshots

    def list_or_fail(repo, **kw):
        if repo == "repo:far":
            raise DependencyError("far is unreachable")
        return listed(repo, **kw)

    monkeypatch.setattr(retention.restic_snapshots, "list_snapshots", list_or_fail)
    results = retention.run(CFG, policy_set(target("files", ("worm", "far")), target("db", ("far",))))
    assert [(r["target"], r["destination"], r["status"]) for r in results] == [
        ("files", "worm", "ok"), ("files", "far", "unavailable"), ("db", "far", "unavailable")]


def test_dry_run_forgets_no_companion(fake):
    engine = fake([snap("a", "backupd", "target=files"), snap("c", "backupd-manifest", "target=files", "of=aa")],
                  removed={"a" * 8})
    (result,) = retention.run(CFG, policy_set(target("files")), dry_run=True)
    assert result["remove"] == ["a" * 8] and engine.forgotten_ids == [] and "manifests_removed" not in result
