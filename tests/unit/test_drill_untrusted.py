"""What a drill reads from storage is the attacker's (issue 21, item 3): a manifest, amendment or listing of
the wrong shape is a finding naming the field and the snapshot; any error inside a drill ends that drill
as a FAIL on the record (state row and evidence), and the next target is still drilled. No restic here:
the repository's answers are served from memory, everything after them is the real drill."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupd.actions import drill as drill_action
from backupd.actions import snapshot_choice as choice
from backupd.config.loader import Config
from backupd.drill import sample
from backupd.drill.phases import PhaseTimer
from backupd.drill.spec import DrillSpec
from backupd.engine import snapshots as restic_snapshots
from backupd.engine.snapshots import Snapshot
from backupd.errors import Finding
from backupd.evidence.ledger import Ledger
from backupd.files import manifest
from backupd.files.verify import EarlyHasher, verify_tree
from backupd.probes import logs, programs
from backupd.probes import postgres as pg_probe
from backupd.process import execute
from backupd.render.results import drill_exit_code
from backupd.state.runs import State

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
PATHS = ["/srv/tos", "/state/manifests/tos", "/state/manifests/gate"]
OLD = Snapshot(id="aa" * 32, short_id="aaaaaaaa", time=T0, host="h", paths=PATHS, tags=["backupd", "target=tos"])
NEW = Snapshot(id="bb" * 32, short_id="bbbbbbbb", time=T0 + timedelta(hours=1), host="h", paths=PATHS,
               tags=["backupd", "target=tos"])
SPEC = DrillSpec.model_validate({"version": 1, "kind": "sample",
                                 "probes": [{"kind": "programs"}, {"kind": "logs", "pattern": "*.log"}]})
SECRET = "hunter2-repository-password"


def _base() -> dict:
    """A manifest as backup writes it: every field a drill, restore or probe reads."""
    return {"format": 1, "target": "tos", "host": "h",
            "files": [{"path": "/srv/tos/bin/gate", "type": "file", "size": 4, "sha256": "ab" * 32,
                       "mode": "0o755", "mtime_ns": 1},
                      {"path": "/srv/tos/log/app.log", "type": "file", "size": 10, "sha256": "cd" * 32,
                       "mode": "0o644", "mtime_ns": 2},
                      {"path": "/srv/tos/current", "type": "symlink", "size": 3, "sha256": "ef" * 32,
                       "mode": "0o777", "mtime_ns": 3},
                      {"path": "/tos.dump", "type": "stdin", "size": 100, "sha256": "01" * 32, "mode": "",
                       "mtime_ns": 0}],
            "facts": {"files": 4, "bytes": 117, "rows": {"public.containers": 100, "yard.slots": 7},
                      "change": {"suspicious": False, "flags": ["mass deletion"]},
                      "changed_during_backup": ["/srv/tos/log/app.log"],
                      "heads": {"/srv/tos/log/app.log": "12" * 32}}}


def _target(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, destinations=["d"], rto=timedelta(hours=1), rpo=timedelta(hours=1),
                           drill=None, sources=SimpleNamespace(paths=["/srv/tos"]))


class Repository:
    """The repository's answers: a listing of OLD and NEW, their manifests from `docs` (by snapshot)."""

    def __init__(self, tmp_path, monkeypatch, targets=("tos",)):
        (tmp_path / "secrets").mkdir(exist_ok=True)
        (tmp_path / "secrets" / "restic-password").write_text(SECRET + "\n")
        self.cfg = Config(path=None, state_dir=tmp_path / "state", secrets_dir=tmp_path / "secrets", host="h")
        self.docs = {OLD.id: _base(), NEW.id: _base()}
        self.empty = True
        self.targets = [_target(t) for t in targets]
        self.policy_set = SimpleNamespace(targets=self.targets, destinations={"d": None},
                                          target=lambda n: next(t for t in self.targets if t.name == n))
        repo = SimpleNamespace(name="d", password_file=tmp_path / "secrets" / "restic-password", s3_keys={})
        monkeypatch.setattr(drill_action, "spec_for", lambda cfg, target: SPEC)
        monkeypatch.setattr(drill_action.media, "source_for",
                            lambda cfg, policy_set, target, destination=None: drill_action.media.Source("d", repo))
        monkeypatch.setattr(drill_action, "select", self.select)
        monkeypatch.setattr(choice.restic_restore, "dump_file", self.dump)
        monkeypatch.setattr(choice.restic_restore, "restore", self.restore)

    def select(self, repo, target, hosts, snapshot_id=None, *args, **kwargs):
        return choice.Selection([OLD, NEW], [OLD, NEW], {}, NEW, "newest")

    def restore(self, repo, snapshot_id, target_dir, includes=None, **kwargs):
        """Only the files asked for (a sample) get restored; no target restores any when `empty`."""
        if not self.empty:
            entries = self.docs[NEW.id].get("files") or []
            _plant(target_dir, [e for e in entries if includes is None or e.get("path") in includes])

    def dump(self, repo, snapshot_id, path, timeout=600):
        return json.dumps(self.docs[snapshot_id]).encode()

    def drill(self, target: str = "tos") -> dict:
        state = State(self.cfg.state_dir)
        return drill_action._drill(self.cfg, state, self.policy_set, self.policy_set.target(target), False,
                                   None, execute.Cancel())

    def records(self, target: str) -> list[dict]:
        return [r for r in Ledger(self.cfg.state_dir).query(kind="drill") if r["data"]["target"] == target]


# --- a malformed field is a finding naming it --------------------------------------------------------------

FILE = _base()["files"][0]
MALFORMED = [
    ({"rows": {"public.cont\0ainers": 100}}, "facts.rows: table name 'public.cont\\x00ainers'"),
    ({"rows": {"public.\x1b[2Jcontainers": 1}}, "facts.rows: table name"),
    ({"rows": {"public.\ud800": 1}}, "facts.rows: table name"),
    ({"rows": {"public." + "t" * 130: 1}}, "at most 127 bytes"),
    ({"rows": {"public.": 1}}, "facts.rows: table name"),
    ({"rows": {"public.t": 2**63}}, "facts.rows['public.t']: 9223372036854775808 is not a row count"),
    ({"rows": {"public.t": -1}}, "facts.rows['public.t']"),
    ({"rows": {"public.t": True}}, "facts.rows['public.t']"),
    ({"rows": {"public.t": 1.5}}, "facts.rows['public.t']"),
    ({"files": 2**64}, "facts.files"),
    ({"change": ["suspicious"]}, "facts.change is not an object"),
    ({"change": {"flags": 3}}, "facts.change.flags"),
    ({"change": {"flags": ["x" * 8193]}}, "facts.change.flags"),
    ({"heads": []}, "facts.heads"),
    ({"heads": {"/srv/tos/log/app.log": 5}}, "facts.heads['/srv/tos/log/app.log']"),
    ({"changed_during_backup": ["relative/path"]}, "facts.changed_during_backup[0]"),
    ({"changed_during_backup": ["/srv/\0x"]}, "facts.changed_during_backup[0]"),
]
MALFORMED_FILES = [
    ({k: v for k, v in FILE.items() if k != "type"}, "files[0]: /srv/tos/bin/gate: type None"),
    ({k: v for k, v in FILE.items() if k != "mode"}, "files[0]: /srv/tos/bin/gate: mode"),
    ({**FILE, "mode": "rwxr-xr-x"}, "files[0]: /srv/tos/bin/gate: mode"),
    ({**FILE, "mode": "0o"}, "mode"),
    ({**FILE, "size": 2**63}, "size"),
    ({**FILE, "mtime_ns": "yesterday"}, "mtime_ns"),
    ({**FILE, "path": "/srv/\ud800"}, "files[0]: path '/srv/\\ud800'"),
    ({**FILE, "path": "/srv/" + "a" * 4096}, "at most 4096 characters"),
]


@pytest.mark.parametrize("facts, why", MALFORMED, ids=[w for _, w in MALFORMED])
def test_a_malformed_fact_from_storage_is_a_finding_naming_the_field_and_snapshot(facts, why, monkeypatch):
    doc = _base()
    doc["facts"].update(facts)
    assert why in (manifest.problem(doc) or ""), manifest.problem(doc)
    monkeypatch.setattr(choice.restic_restore, "dump_file", lambda *a, **k: json.dumps(doc).encode())
    with pytest.raises(Finding, match="the manifest in snapshot bbbbbbbb is malformed"):
        choice.load_manifest(None, NEW, "tos", "h", [NEW])


@pytest.mark.parametrize("entry, why", MALFORMED_FILES, ids=[w for _, w in MALFORMED_FILES])
def test_a_malformed_file_entry_is_a_finding_naming_the_field(entry, why):
    doc = _base()
    doc["files"][0] = entry
    assert why in (manifest.problem(doc) or ""), manifest.problem(doc)


def test_what_backup_writes_passes_and_a_bare_table_name_still_does():
    doc = _base()
    doc["facts"]["rows"] = {"containers": 1, "スキーマ.コンテナ": 2, "public.with.dot": 3, "public.t": 2**63 - 1}
    doc["files"][0]["path"] = "/srv/tos/bad\udcff.bin"  # a non-UTF-8 file name, as os.walk gives it
    assert manifest.problem(doc) is None and manifest.problem(_base()) is None


def test_a_malformed_amendment_names_the_field(monkeypatch):
    amend = Snapshot(id="cc" * 32, short_id="cccccccc", time=NEW.time, host="h",
                     paths=["/state/manifests/tos.amend"], tags=[manifest.AMEND_TAG, "target=tos", f"of={NEW.id}"])
    docs = {NEW.id: _base(), amend.id: {"changed_during_backup": ["/srv/ok", "/srv/\0"]}}
    monkeypatch.setattr(choice.restic_restore, "dump_file", lambda repo, sid, path, **k: json.dumps(docs[sid]).encode())
    with pytest.raises(Finding, match=r"amendment in snapshot cccccccc is malformed \(changed_during_backup\[1\]"):
        choice.load_manifest(None, NEW, "tos", "h", [NEW, amend])


def test_a_manifest_nested_too_deep_for_the_parser_is_not_valid_json(monkeypatch):
    monkeypatch.setattr(choice.restic_restore, "dump_file", lambda *a, **k: b"[" * 100_000)
    with pytest.raises(Finding, match="not valid JSON"):
        choice.load_manifest(None, NEW, "tos", "h", [NEW])


@pytest.mark.parametrize("item, field", [
    ({"id": "ab" * 32, "time": "0000-01-01T00:00:00Z", "paths": ["/srv"]}, "time"),  # restic prints year 0
    ({"id": "ab" * 32, "time": "2026-11-01T00:00:00+25:00"}, "time"),
    ({"time": "2026-11-01T00:00:00Z"}, "id"),
    ({"id": "ab" * 32, "time": "2026-11-01T00:00:00Z", "tags": [5]}, "paths/tags"),
])
def test_a_listed_snapshot_python_cannot_take_is_left_out_naming_it(item, field, capsys, monkeypatch):
    good = {"id": "cd" * 32, "time": "2026-11-02T00:00:00Z", "paths": ["/srv"]}
    listed = json.dumps([item, good]).encode()
    snaps = restic_snapshots.parse(listed)
    assert [s.id for s in snaps] == ["cd" * 32]  # the rest of the listing still serves restore and drill
    assert [f"malformed {field}" in s.why for s in snaps.skipped] == [True]
    assert capsys.readouterr().err == ""  # the engine prints nothing: the action that listed names it
    monkeypatch.setattr(restic_snapshots.command, "run", lambda *a, **k: SimpleNamespace(stdout=listed))
    assert [s.id for s in choice.target_listing(SimpleNamespace(name="d"), "tos", "h")] == ["cd" * 32]
    assert f"malformed {field}" in capsys.readouterr().err


def test_an_empty_or_non_hex_of_tag_names_no_snapshot():
    assert NEW.made_as("bbbb") and not NEW.made_as("") and not NEW.made_as("-") and not NEW.made_as("BB")


# --- any error inside a drill is a FAIL on the record --------------------------------------------------------

def test_an_error_inside_a_drill_is_a_fail_on_the_record_and_the_next_target_is_still_drilled(tmp_path, monkeypatch):
    """A ValueError deep in the drill (here from the sample choice, carrying the repository password and a
    terminal escape) fails that drill with a scrubbed reason in state and evidence; the next target runs."""
    repo = Repository(tmp_path, monkeypatch, targets=("tos", "gate"))
    real_choose, calls = sample.choose, []

    def choose(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError(f"embedded null byte\0 near \x1b[2J{SECRET}\n(planted)")
        return real_choose(*args, **kwargs)

    monkeypatch.setattr(drill_action.sample, "choose", choose)
    reports = drill_action.run(repo.cfg, repo.policy_set, due=False)
    assert [r["target"] for r in reports] == ["tos", "gate"]
    first, second = reports
    assert first["verdict"] == "FAIL" and first["status"] == "failed"
    assert first["reason"].startswith("internal error: ValueError: embedded null byte")
    assert SECRET not in first["reason"] and "[REDACTED]" in first["reason"]
    assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in first["reason"])
    state = State(repo.cfg.state_dir)
    assert state.last("drill", "tos")["status"] == "fail"
    assert [r["data"]["verdict"] for r in repo.records("tos")] == ["FAIL"]
    assert repo.records("tos")[0]["data"]["reason"] == first["reason"]
    # drilled to its verdict: nothing was restored here, so every file is missing (one changed during backup)
    assert second["verdict"] == "FAIL" and "3 missing" in second["reason"], second["reason"]
    assert state.last("drill", "gate")["status"] == "fail"
    assert [r["data"]["target"] for r in Ledger(repo.cfg.state_dir).query(kind="drill")] == ["tos", "gate"]
    assert drill_exit_code(reports) == 1


@pytest.mark.parametrize("unavailable", ["probe", "storage"])
def test_a_finding_about_an_unannounced_snapshot_outranks_an_unavailable_dependency(unavailable, tmp_path,
                                                                                     monkeypatch):
    """A verifier's drill found a snapshot no backup record announced, and a probe (or the storage) was
    unavailable: the drill is failed (exit 1), on the record too, never unavailable (exit 3)."""
    from backupd.actions import announced
    from backupd.errors import DependencyError
    from backupd.probes.base import ProbeResult

    repo = Repository(tmp_path, monkeypatch)
    planted = Snapshot(id="cc" * 32, short_id="cccccccc", time=T0 + timedelta(hours=2), host="h", paths=PATHS,
                       tags=["backupd", "target=tos"])
    ann = announced.Announcement(NEW.id, "h", "tos", "d", "2026-11-01T01:00:00Z", 1, "ab" * 32)
    screened = announced.Screened(counted=[OLD, NEW], rejected=[(planted, announced.UNANNOUNCED)],
                                  by_id={OLD.id: ann, NEW.id: ann})
    monkeypatch.setattr(drill_action, "select", lambda *a, **k: choice.Selection([OLD, NEW, planted], [OLD, NEW],
                                                                                 {}, NEW, "newest", screened))
    monkeypatch.setattr(choice.announced_mod, "check_manifest", lambda data, announcement, where: None)
    if unavailable == "probe":
        monkeypatch.setattr(drill_action.probes, "run", lambda probe, ctx: ProbeResult(
            name=probe.kind, kind=probe.kind, status="unavailable", problems=["pg_ctl not found"]))
    else:
        def down(*args, **kwargs):
            raise DependencyError("storage unreachable")

        monkeypatch.setattr(choice.restic_restore, "restore", down)
    report = repo.drill()
    assert [u["snapshot_id"] for u in report["unannounced"] if u["finding"]] == [planted.id]
    assert report["status"] == "failed" and drill_exit_code([report]) == 1, report
    assert State(repo.cfg.state_dir).last("drill", "tos")["status"] != "unavailable"
    # without the finding the same drill is unavailable (exit 3), as before
    monkeypatch.setattr(drill_action, "select", lambda *a, **k: choice.Selection(
        [OLD, NEW], [OLD, NEW], {}, NEW, "newest", announced.Screened([OLD, NEW], [], {OLD.id: ann, NEW.id: ann})))
    assert drill_exit_code([repo.drill()]) == 3


def test_an_interrupt_still_stops_the_drill_and_a_cancel_stops_the_targets_after_it(tmp_path, monkeypatch):
    repo = Repository(tmp_path, monkeypatch, targets=("tos", "gate"))
    real_choose = sample.choose

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(drill_action.sample, "choose", interrupted)
    with pytest.raises(KeyboardInterrupt):
        drill_action.run(repo.cfg, repo.policy_set)
    cancel = execute.Cancel()

    def cancelled(*args, **kwargs):
        cancel.set()  # SIGTERM while the first target's drill runs
        return real_choose(*args, **kwargs)

    monkeypatch.setattr(drill_action.sample, "choose", cancelled)
    reports = drill_action.run(repo.cfg, repo.policy_set, cancel=cancel)
    assert [(r["target"], r["verdict"]) for r in reports] == [("tos", "FAIL")]
    assert "cancelled" in reports[0]["reason"] and State(repo.cfg.state_dir).last("drill", "gate") is None


# --- property: whatever the repository returns, the consumers never raise ----------------------------------

WEIRD_TEXT = st.sampled_from(["", "\0", "a\0b", "\ud800", "\udcff", "public.\x1b[31m", "..", "/..", "/a/../b",
                              "x" * 5000, "0o9", "0o", "\u0085", "-1", "public.", ".t", "/srv/tos/bin/gate",
                              "/srv/tos/log/app.log.1", "public.containers", "a" * 64, "*"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.sampled_from([2**63, 2**63 - 1, -1, 0, 0o755]),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12), WEIRD_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | WEIRD_TEXT, inner, max_size=3), max_leaves=6)


def _mutate(draw, doc: dict) -> None:
    """Replace, delete or add one value anywhere in doc (descending at random)."""
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if isinstance(node[key], (dict, list)) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[key] = draw(VALUES)
        elif action == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.text(max_size=6) | WEIRD_TEXT)] = draw(VALUES)
        else:
            node.append(draw(VALUES))
        return
    if isinstance(node, dict):
        node[draw(WEIRD_TEXT)] = draw(VALUES)
    else:
        node.append(draw(VALUES))


#: Where the readers look: each field of each entry and of the facts (a random walk rarely gets there).
FIELDS = ([("files", i, k) for i in range(4) for k in ("path", "type", "size", "sha256", "mode", "mtime_ns")]
          + [("facts", k) for k in ("files", "bytes", "rows", "change", "changed_during_backup", "heads")]
          + [("facts", "rows", "public.containers"), ("facts", "change", "flags"), ("facts", "change", "flags", 0),
             ("facts", "heads", "/srv/tos/log/app.log"), ("facts", "changed_during_backup", 0)])


def _mutate_field(draw, doc: dict) -> None:
    """Replace or delete one field the readers use, or add a row count under a strange table name."""
    *where, key = draw(st.sampled_from(FIELDS))
    node = doc
    for step in where:
        node = node[step]
    if where == ["facts", "rows"] and draw(st.booleans()):
        node[draw(WEIRD_TEXT | st.text(max_size=8))] = draw(st.integers(min_value=-1, max_value=2**64))
    elif draw(st.integers(0, 4)) == 0:
        del node[key]
    else:
        node[key] = draw(WEIRD_TEXT | VALUES)


@st.composite
def mutated_manifests(draw) -> dict:
    doc = _base()
    for _ in range(draw(st.integers(1, 3))):
        try:
            _mutate_field(draw, doc) if draw(st.booleans()) else _mutate(draw, doc)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced the way there
    return doc


def _plant(root, entries) -> None:
    """What restic would restore for entries: a regular file (or symlink) at each usable path."""
    for e in entries if isinstance(entries, list) else []:
        path = e.get("path") if isinstance(e, dict) else None
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path or ".." in path.split("/"):
            continue
        local = root / path.lstrip("/")
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            if e.get("type") == "symlink":
                local.symlink_to("target")
            else:
                local.write_bytes(b"x" * min(e["size"], 64) if type(e.get("size")) is int and e["size"] > 0 else b"")
                local.chmod(0o755)
        except (OSError, ValueError):
            continue


class Cluster:
    """The restored database as psql answers: each manifest name PostgreSQL could hold is a table of 7 rows;
    argv must encode and hold no NUL, as subprocess takes it."""

    def __init__(self, names):
        self.names = [n for n in names if "\0" not in n and n.encode("utf-8", "replace").decode() == n]

    @staticmethod
    def _argv(args) -> None:
        for arg in args:
            if "\0" in arg:
                raise ValueError("embedded null byte")
            os.fsencode(arg)

    def query(self, sql: str, timeout: float = 600) -> list[str]:
        self._argv([sql])
        if "nspname" in sql:  # the catalog
            return [json.dumps([*(n.split(".", 1) if "." in n else ["public", n]), "r"]) for n in self.names]
        return [json.dumps([i, 7]) for i in range(sql.count("SELECT "))]

    def psql(self, *args) -> str:
        self._argv(args)
        return "\n".join(f"{i}|7" for i in range(args[-1].count("SELECT ")))


def _consume(doc: dict, tmp) -> None:
    """Every reader of a manifest on the drill and restore paths, on an empty restored tree."""
    entries = doc.get("files", [])
    chosen = sample.choose(entries, NEW.id, 200, 1 << 30, ["/srv/tos/bin/gate"])
    _plant(tmp, chosen)
    verify_tree(tmp, {**doc, "files": chosen})
    with EarlyHasher(tmp, {**doc, "files": chosen}) as early:  # a full drill's and restore --to's pass
        pass
    verify_tree(tmp, {**doc, "files": chosen}, hashed=early.matched)
    ctx = SimpleNamespace(manifest=doc, restored=entries, previous=lambda: _base(), regular=lambda p: None)
    probe = SimpleNamespace(row_counts=True, tables={})
    result = SimpleNamespace(details={}, problems=[])
    rows = doc.get("facts", {}).get("rows", {})
    pg_probe._compare_rows(probe, ctx, Cluster(rows if isinstance(rows, dict) else []), result)
    programs._executables(ctx)
    logs.Walk(doc, {}, [_base()], "*.log").judge()
    logs.Walk(_base(), {}, [doc], "*.log").judge()
    report = {"probes": [], "bytes_restored": 0, "files_restored": len(chosen)}
    drill_action._judge(report, PhaseTimer(), _target("tos"), doc, "sample", [])
    drill_action._judgement(NEW, {NEW.id: "flagged as suspect at backup time"}, doc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=mutated_manifests())
def test_a_manifest_problem_accepts_is_one_every_consumer_can_read(doc, tmp_path_factory):
    """Whatever the mutation: either problem() names what is wrong, or no reader of the manifest raises."""
    if manifest.problem(doc) is None:
        _consume(doc, tmp_path_factory.mktemp("restored"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=mutated_manifests())
def test_whatever_the_manifest_the_drill_ends_with_a_verdict_on_the_record(doc, tmp_path_factory):
    """The real drill on a mutated manifest (restic's answers served from memory): it returns a verdict,
    writes one state row and one evidence record; a malformed manifest is a FAIL naming the field, never
    an internal error."""
    root = tmp_path_factory.mktemp("drill")
    with pytest.MonkeyPatch.context() as monkeypatch:
        repo = Repository(root, monkeypatch)
        repo.docs[NEW.id], repo.empty = doc, False
        report = repo.drill()
    assert report["verdict"] in ("PASS", "WARN", "FAIL", "SUSPECT")
    assert "internal error" not in report.get("reason", ""), report["reason"]
    why = manifest.problem(doc)
    if why is not None:
        assert report["verdict"] == "FAIL" and why in report["reason"]
    assert len(State(repo.cfg.state_dir).runs("drill", "tos")) == 1
    assert [r["data"]["verdict"] for r in repo.records("tos")] == [report["verdict"]]
