"""`backupd drill`: restore a snapshot into a private sandbox, verify every restored file against the
backup-time manifest, run the spec's probes, and judge the time to service-ready against the RTO."""

from __future__ import annotations

import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from backupd import evidence, output, probes
from backupd.actions import alongside, announced_mirror, media
from backupd.actions.alongside import guess, manifest_at
from backupd.actions.snapshot_choice import Selection, load_manifest, select
from backupd.config.loader import Config
from backupd.drill import projection, sample, verdict
from backupd.drill.due import due_kind
from backupd.drill.limits import Guard
from backupd.drill.phases import FirstFile, PhaseTimer, bytes_read
from backupd.drill.sandbox import Sandbox, private_dir, sigterm_cancels
from backupd.drill.spec import DrillSpec, spec_for
from backupd.engine import restore as restic_restore
from backupd.engine.exitcodes import Cancelled
from backupd.errors import BackupdError, ConfigError, DependencyError
from backupd.evidence.keys import key_dir
from backupd.files.verify import EarlyHasher, verify_tree
from backupd.process import execute, sandbox
from backupd.state.runs import State

PASSED = ("pass", "warn")
PASSED_VERDICTS = ("PASS", "WARN")
MANIFEST_READERS = 4
#: Longest sandbox parent that leaves room for the PostgreSQL socket path (107 bytes on Linux).
SHORT_PARENT = 60


def _checkpoint(cancel: execute.Cancel) -> None:
    if cancel.is_set():
        raise Cancelled("drill cancelled (SIGTERM); sandbox removed")


def confined(spec: DrillSpec) -> bool:
    """True when a probe of the spec starts processes (they run confined, as the sandbox uid)."""
    return any(p.kind in ("postgres", "command") or (p.kind == "programs" and p.command) for p in spec.probes)


def sandbox_parent(cfg: Config, spec: DrillSpec) -> Path:
    """The spec's dir, else state_dir/sandbox. Probe processes started as root run as the sandbox uid,
    which must traverse the parent (and PostgreSQL needs a short socket path); otherwise the system temp
    dir is used."""
    parent = spec.sandbox.dir or cfg.state_dir / "sandbox"
    if os.geteuid() != 0 or not confined(spec):
        return parent
    for candidate in (parent, Path(tempfile.gettempdir()) / "backupd-sandbox"):
        candidate.parent.mkdir(parents=True, exist_ok=True)
        # traversable, not listable (each sandbox below is 0700); in a shared /tmp the fixed name may be a
        # planted symlink or another user's directory: never chmod through it, take a fresh private one
        candidate = private_dir(candidate) or private_dir(Path(tempfile.mkdtemp(prefix="backupd-sandbox-")))
        if len(str(candidate)) <= SHORT_PARENT and sandbox.reachable(candidate, sandbox.UID):
            return candidate
    return candidate


def probe_jail(cfg: Config, spec: DrillSpec, box: Sandbox, repo, cancel: execute.Cancel,
               group=None) -> sandbox.Jail:
    """Where this drill's probe processes run: the restored tree read-only, `work/` writable, the spec's
    limits, the drill's cgroup `group`; every secret this host holds is scrubbed from their output."""
    work = box.path / "work"
    work.mkdir(mode=0o700)
    limits = sandbox.Limits(memory=spec.sandbox.memory, processes=spec.sandbox.processes,
                            file_size=spec.sandbox.max_bytes)
    return sandbox.Jail(readonly=(box.restore_dir,), writable=(work,), root=box.path, limits=limits,
                        secrets=secrets(cfg, repo), cancel=cancel, group=group)


def required_paths(target, spec: DrillSpec) -> list[str]:
    """Files a sample must hold so the probes can run (the program a programs probe starts)."""
    home = (getattr(target.sources, "paths", None) or ["/"])[0].rstrip("/")
    return [f"{home}/{p.command[0]}" for p in spec.probes if p.kind == "programs" and p.command]


def _previous_manifest(repo, selection: Selection, target: str, host: str | list[str]):
    snap = selection.snap
    older = [s for s in selection.snaps if s.time < snap.time]
    return (load_manifest(repo, older[-1], target, host, selection.listing,
                          announcement=selection.announced(older[-1])) if older else None)


def _older_manifests(repo, selection: Selection, target: str, host: str | list[str]) -> list[dict]:
    """Manifests of every retained generation older than the chosen one, newest first (read a few at a
    time); a verifier's only of announced generations, each checked against its announcement."""
    snap = selection.snap
    older = [s for s in reversed(selection.snaps) if s.time < snap.time]
    with ThreadPoolExecutor(max_workers=MANIFEST_READERS) as pool:
        return list(pool.map(lambda s: load_manifest(repo, s, target, host, selection.listing,
                                                     announcement=selection.announced(s)), older))


def _verified_since(state: State, target: str) -> float | None:
    """Unix time of the newest snapshot that passed at least a sample drill (from state)."""
    times = [r["detail"].get("verified_snapshot_time") for r in
             (state.last("drill", target, s) for s in PASSED) if r]
    times = [t for t in times if t]
    return max(times) if times else None


def _restore_sample(box, repo, snap, doc: dict, chosen: list[dict], timer, cancel):
    """Restore the chosen files (no --include when they are all of them) with early verification; the
    manifest is known."""
    box.reserve(sum(e["size"] for e in chosen))
    includes = None if len(chosen) == len(doc.get("files", [])) else [e["path"] for e in chosen]
    with timer.phase("restore"), EarlyHasher(box.restore_dir, {**doc, "files": chosen}) as early, \
            FirstFile(box.restore_dir) as first:
        restic_restore.restore(repo, snap.id, box.restore_dir, includes=includes, cancel=cancel)
    return early, first


def _restore_full(box, repo, target: str, hosts, selection: Selection | None, first_guess: str | None,
                  snapshot_id: str | None, prefetch: tuple[str, str] | None, timer, cancel):
    """Restore all of the chosen snapshot into the sandbox while its manifest (and without a selection, the
    listing) is read alongside (alongside.restore); the manifest's bytes are reserved in the sandbox as soon
    as it arrives."""
    def read(chosen: Selection, early):
        return load_manifest(repo, chosen.snap, target, hosts, chosen.listing, prefetched=early,
                             announcement=chosen.announcement)

    def reserve(doc: dict) -> None:
        box.reserve(sum(e["size"] for e in doc.get("files", [])))

    with timer.phase("restore"):
        return alongside.restore(repo, box.restore_dir, selection, lambda: select(repo, target, hosts, snapshot_id),
                                 read, first_guess, prefetch, cancel, then=reserve)


def _chosen(report: dict, selection: Selection, doc: dict) -> None:
    """The drilled snapshot, why it was chosen and its judgement, into the report; a verifier's also its
    announcement and the snapshots no backup record announced (a finding: see _status)."""
    snap = selection.snap
    report.update(snapshot_id=snap.id, snapshot_time=snap.time.isoformat(), snapshot_host=snap.host,
                  explanation=selection.explanation, judgement=_judgement(snap, selection.bad, doc))
    if selection.screened is not None:
        report["announcement"] = selection.announcement.to_dict() if selection.announcement else None
        report["unannounced"] = selection.screened.findings()


def _restore_and_probe(cfg, target, spec, kind, repo, selection, doc, timer, cancel, report, first_guess=None,
                       snapshot_id=None, prefetch=None) -> tuple[Selection, dict, list[str]]:
    """Restore (all or a stratified sample), verify, probe; returns (selection, manifest, problems). A full
    drill's manifest (doc None) is read while restic restores (from `prefetch`, see _restore_full), and so
    is its listing when it has no selection yet (the restore of `first_guess` starts at once). The sandbox
    is handed to a detached reaper on the way out (sandbox.hand_off): nobody waits for its removal."""
    problems: list[str] = []
    with Sandbox(sandbox_parent(cfg, spec), spec.sandbox.max_bytes, True, spec.sandbox.min_free, cancel) as box, \
            Guard(box, spec.sandbox, cfg.state_dir, cancel) as guard:
        report["sandbox"] = str(box.path)
        guard.describe_into(report)  # report["limits"], again when the guard exits: a cgroup left is named
        cancel = guard.cancel  # also set when the drill reaches its disk limit (LimitReached on exit)
        _checkpoint(cancel)
        jail = probe_jail(cfg, spec, box, repo, cancel, guard.group)
        # a database server starts while restic restores; what no probe took over stops at the end
        with probes.prepare(spec.probes, box.path, jail) as prepared:
            selection, doc, chosen = _restore_and_verify(cfg, target, spec, box, repo, selection, doc, timer, cancel,
                                                         report, problems, (first_guess, snapshot_id, prefetch))
            snap = selection.snap
            ctx = probes.ProbeContext(
                target=target, sandbox=box.path, restore_dir=box.restore_dir, manifest=doc, restored=chosen,
                snapshot_time=snap.time, rpo=target.rpo, cancel=cancel, grant=jail.hand_over, jail=jail,
                prepared=prepared,
                previous=lambda: _previous_manifest(repo, selection, target.name, cfg.backup_hosts()),
                older=lambda: _older_manifests(repo, selection, target.name, cfg.backup_hosts()))
            with timer.phase("probes"):
                for probe in spec.probes:
                    _checkpoint(cancel)
                    result = probes.run(probe, ctx)
                    report["probes"].append(result.to_dict())
                    problems += [f"{result.kind} probe: {p}" for p in result.problems]
        problems += guard.exceeded(problems)
    return selection, doc, problems


def _restore_and_verify(cfg, target, spec, box, repo, selection, doc, timer, cancel, report, problems,
                        hint) -> tuple[Selection, dict, list[dict]]:
    """Restore all (doc None: its manifest read alongside, see _restore_full) or a sample chosen from
    `doc`, and verify it. `hint`: (first guess, snapshot id asked for, manifest prefetch). Returns
    (selection, manifest, the manifest entries restored)."""
    read = bytes_read()
    first_guess, snapshot_id, prefetch = hint
    if doc is None:
        selection, doc, early, first, waited, confirmed = _restore_full(
            box, repo, target.name, cfg.backup_hosts(), selection, first_guess, snapshot_id, prefetch, timer,
            cancel)
        if confirmed is not None:
            report["guess"] = {"snapshot": first_guess, "confirmed": confirmed}
        chosen = doc.get("files", [])
    else:
        chosen = sample.choose(doc.get("files", []), selection.snap.id, spec.sample.max_files,
                               spec.sample.max_bytes, required_paths(target, spec))
        early, first = _restore_sample(box, repo, selection.snap, doc, chosen, timer, cancel)
        waited = 0.0
    _chosen(report, selection, doc)
    report.update(files_restored=len(chosen), bytes_restored=sum(e["size"] for e in chosen))
    report["restore_startup_seconds"] = first.seconds  # until content is written: fixed (projection)
    report["restore_alongside_seconds"] = waited  # after restic, the manifest still read: fixed too
    if read is not None:  # what restic fetched (a full drill's includes the reads alongside);
        # the early hashing read the matched files in this process
        hashed = sum(e["size"] for e in chosen if e["path"] in early.matched)
        report["restore_read_bytes"] = max(bytes_read() - read - hashed, 0)
    _checkpoint(cancel)
    with timer.phase("verify"):  # what the restore left: files not hashed yet, every file's type and mode
        try:
            check = verify_tree(box.restore_dir, {**doc, "files": chosen}, hashed=early.matched, cancel=cancel)
        except execute.Interrupted:
            _checkpoint(cancel)  # stopped mid-hash: Cancelled, as at any other point of the drill
            raise
    report["verification"] = {**check.to_dict(), "hashed_during_restore": len(early.matched)}
    if not check.ok:
        problems.append(f"{len(check.mismatched)} file(s) differ from the backup-time manifest, "
                        f"{len(check.missing)} missing")
    return selection, doc, chosen


def _judge(report: dict, timer: PhaseTimer, target, doc: dict, kind: str, problems: list[str]) -> None:
    facts = doc.get("facts", {})
    total_files = facts.get("files", len(doc.get("files", [])))
    total_bytes = facts.get("bytes", sum(e["size"] for e in doc.get("files", [])))
    report.update(phases=timer.phases, total_files=total_files, total_bytes=total_bytes)
    ready = timer.total
    # per-phase rates (backupd.drill.projection): a sample projects its snapshot's full drill with them
    report["rates"] = projection.rates(projection.breakdown(timer.phases, report["probes"],
                                                            report.get("restore_startup_seconds"),
                                                            report.get("restore_alongside_seconds")),
                                       report["bytes_restored"], report["files_restored"],
                                       of_files=len(doc.get("files", [])))
    report["projection"] = projection.project(report["rates"], total_bytes, total_files)
    if kind == "sample":
        ready = report["projection"]["seconds"]
        report["projected_full_seconds"] = ready
    report["service_ready_seconds"] = ready
    report["verdict"], report["reason"] = verdict.judge(ready, target.rto, problems)


def _judgement(snap, bad: dict[str, str], doc: dict) -> dict:
    """What backup time (and operators since) said of the drilled snapshot."""
    change = doc.get("facts", {}).get("change") or {}
    return {"suspect": snap.id in bad, "reason": bad.get(snap.id),
            "flags": list(change.get("flags", []))[:20] if snap.id in bad else []}


def _suspect_verdict(report: dict) -> None:
    """A snapshot flagged suspect (and not accepted) cannot pass a drill, whatever its probes say: its
    data may be what the attacker left."""
    judgement = report.get("judgement") or {}
    if judgement.get("suspect") and report["verdict"] in ("PASS", "WARN"):
        report["verdict"] = "SUSPECT"
        flags = "; ".join(judgement.get("flags", [])[:3])
        report["reason"] = (f"snapshot {report['snapshot_id'][:8]} is {judgement['reason']}"
                            + (f" ({flags})" if flags else "")
                            + "; accept it with `backupd accept` if the change was legitimate; "
                            + report.get("reason", ""))


def _drill(cfg: Config, state: State, policy_set, target, full: bool, snapshot_id, cancel,
           announced=None, destination: str | None = None) -> dict:
    spec = spec_for(cfg, target)
    kind = "full" if full else spec.kind
    dest_name = destination or target.destinations[0]
    report = {"target": target.name, "destination": dest_name, "kind": kind, "spec": spec.name,
              "rto_seconds": target.rto.total_seconds() if target.rto else None, "probes": [],
              "phases": {}, "verdict": "FAIL", "snapshot_id": None}
    timer, started, selection, repo, failure = PhaseTimer(), time.time(), None, None, None
    try:
        with timer.phase("select"):
            source = media.source_for(cfg, policy_set, target, destination)  # a medium when asked or S3 is down
            repo, report["destination"] = source.repo, source.label
            if source.note:
                report["source"] = source.note
            # a full drill restores its likely snapshot at once, the one `restic snapshots` confirming the
            # choice alongside; else that listing serves the choice, the flags and every manifest read
            # (a verifier chooses first, among what the backup host announced: nothing else is restored)
            first_guess, holder = (guess(state, target.name, dest_name, snapshot_id)
                                   if kind == "full" and not cfg.verifier and source.medium is None else (None, None))
            prefetch = manifest_at(cfg.state_dir, target, first_guess, holder)
            if first_guess is None:
                selection = select(repo, target.name, cfg.backup_hosts(), snapshot_id,
                                   announced=announced_mirror.of_target(cfg, policy_set, target.name, announced),
                                   exclude=media.exclusions(cfg, source, target.name, {}))
                _chosen(report, selection, {})  # the flags come with the manifest
            # a sample is chosen from the manifest; a full drill reads it alongside its restore
            doc = None if kind == "full" else load_manifest(repo, selection.snap, target.name, cfg.backup_hosts(),
                                                            selection.listing, announcement=selection.announcement)
        selection, doc, problems = _restore_and_probe(cfg, target, spec, kind, repo, selection, doc, timer,
                                                      cancel, report, first_guess, snapshot_id, prefetch)
        _judge(report, timer, target, doc, kind, problems)
        _suspect_verdict(report)
    except DependencyError as exc:
        failure = "unavailable"
        report.update(reason=str(exc), phases=timer.phases)
    except ConfigError as exc:  # wrong keys or password: exit 2; recorded as a failed drill (alerted)
        failure = "misconfigured"
        report.update(reason=str(exc), phases=timer.phases)
    except BackupdError as exc:
        report.update(verdict="FAIL", reason=str(exc), phases=timer.phases)
    except Exception as exc:  # noqa: BLE001 - restored data is the attacker's: any error fails this drill
        # on the record, and the next target is still drilled (KeyboardInterrupt, SystemExit go through)
        report.update(verdict="FAIL", reason=internal_reason(exc, _secrets(cfg, repo)), phases=timer.phases)
    report["status"] = _status(report, failure)
    _record(cfg, state, report, started, selection)
    return report


def _status(report: dict, failure: str | None = None) -> str:
    """The drill's one status, decided once, by precedence: misconfigured (exit 2); failed (exit 1) for a
    finding about the repository (a snapshot no backup record announced), whatever was drilled instead and
    whatever was unavailable; unavailable (exit 3) for a dependency (`failure`, or a probe's); else the
    verdict's (ok: PASS/WARN)."""
    if failure == "misconfigured":
        return failure
    if any(u.get("finding") for u in report.get("unannounced") or []):
        return "failed"
    if failure == "unavailable" or any(p.get("status") == "unavailable" for p in report["probes"]):
        return "unavailable"
    return "ok" if report["verdict"] in PASSED_VERDICTS else "failed"


def _restore_point_time(selection: Selection) -> float:
    """When the drilled restore point existed for sure: a verifier's announcement time (the backup host's
    signed, mirrored record), never the snapshot's own time field, which the writer chooses."""
    announcement = selection.announcement
    return (announcement.when() if announcement else selection.snap.time).timestamp()


#: Longest reason an internal error gives a drill (state, evidence, alert).
REASON_LIMIT = 500
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1: a terminal escape in a planted name


def internal_reason(exc: BaseException, secrets=()) -> str:
    """A failed drill's reason for an unexpected error: its type and message, with every secret value this
    host holds replaced, control characters dropped and the length bounded (the message may carry restored
    data, e.g. a planted table name)."""
    if secrets is None:  # the secrets could not be read: the message may hold one, give the type only
        return f"internal error: {type(exc).__name__}"
    text = sandbox.scrub(f"{type(exc).__name__}: {exc}".encode("utf-8", "backslashreplace"), secrets)
    text = _CONTROL.sub(" ", text.decode("utf-8", "replace"))
    return ("internal error: " + text)[:REASON_LIMIT]


def secrets(cfg: Config, repo) -> tuple[str, ...]:
    """Every secret value this host holds: the secrets files, the signing keys, the repository's password
    and S3 keys (when there is a repository yet); what probe output and internal_reason scrub."""
    held = sandbox.secrets_in(cfg.secrets_dir, os.environ.get("CREDENTIALS_DIRECTORY"),
                              key_dir(cfg.state_dir), getattr(repo, "password_file", None))
    keys = getattr(repo, "s3_keys", None) or {}
    return held + tuple(v for k, v in keys.items() if v and k != "AWS_DEFAULT_REGION")


def _secrets(cfg: Config, repo) -> tuple[str, ...] | None:
    """secrets(), or None when they cannot be read (internal_reason then gives the error's type only)."""
    try:
        return secrets(cfg, repo)
    except OSError:
        return None


def _record(cfg: Config, state: State, report: dict, started: float, selection: Selection | None) -> None:
    """State row (status pass|warn|fail, the drilled snapshot) carrying the verified RPO, and evidence."""
    status = report["verdict"].lower() if report["status"] != "unavailable" else "unavailable"
    snap = selection.snap if selection else None
    verified = _verified_since(state, report["target"])
    if status in PASSED and snap is not None:
        verified = max(verified or 0, _restore_point_time(selection))
    report["verified_snapshot_time"] = (datetime.fromtimestamp(verified, timezone.utc).isoformat()
                                        if verified else None)
    report["verified_rpo_seconds"] = round(time.time() - verified) if verified else None
    state.record("drill", report["target"], report["destination"], started, status,
                 snap.id if snap else None,
                 {"kind": report["kind"], "verdict": report["verdict"], "verified_snapshot_time": verified,
                  "service_ready_seconds": report.get("service_ready_seconds"), "phases": report["phases"],
                  "rates": report.get("rates"), "projection": report.get("projection"),
                  "snapshot_id": snap.id if snap else None})
    report["projection_error"] = projection.measured_error(
        [r["detail"] for r in state.runs("drill", report["target"], limit=20) if r["status"] in PASSED])
    evidence.record(cfg, "drill", report)


def run(cfg: Config, policy_set, target_name: str | None = None, *, full: bool = False,
        snapshot_id: str | None = None, cancel: execute.Cancel | None = None, due: bool = False,
        destination: str | None = None) -> list[dict]:
    """Drill one target (or every target); one report per target. With `due`, only the targets whose
    spec schedule wants a drill now, each with the kind that is due (see backupd.drill.due)."""
    cancel = cancel or execute.Cancel()
    targets = [policy_set.target(target_name)] if target_name else list(policy_set.targets)
    state = State(cfg.state_dir)
    plan = [(t, full) for t in targets]
    if due:
        now = time.time()
        kinds = [(t, due_kind(spec_for(cfg, t).schedule, state.runs("drill", t.name), now)) for t in targets]
        plan = [(t, kind == "full") for t, kind in kinds if kind]
    with sigterm_cancels(cancel):
        reports = []
        announced = announced_mirror.for_run(cfg, policy_set, [t.name for t, _ in plan])
        for t, as_full in plan:
            if cancel.is_set():  # a SIGTERM (or the daemon's stop) ends the whole run
                break
            reports.append(_drill(cfg, state, policy_set, t, as_full, snapshot_id, cancel, announced,
                                  destination if destination and media.names(policy_set, t, destination) else None))
    if reports:
        _refresh_report(cfg, policy_set)
    return reports


def _refresh_report(cfg: Config, policy_set) -> None:
    """Rewrite state_dir/reports/drills.html; a report that cannot be written never fails a drill."""
    from backupd.actions import drill_report  # rendering is imported after the drill, not before its restore

    try:
        drill_report.write(cfg, policy_set)
    except Exception as exc:  # noqa: BLE001 - the drill's outcome is recorded already and stands
        output.note(f"drill report not updated: {exc}")
