"""`backupd backup`: run targets, record a content manifest and source facts with each snapshot."""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from backupd import evidence
from backupd.actions import copy as copy_action
from backupd.actions import judgement, locks
from backupd.actions.common import Preflight, Retry, ensure_repository, policy_of, repository
from backupd.config.loader import Config
from backupd.engine import backup as restic_backup
from backupd.engine import feature as restic_feature
from backupd.engine import snapshots as restic_snapshots
from backupd.engine import tag as restic_tag
from backupd.engine.exitcodes import RepositoryLocked, SourceUnreadable, StorageUnavailable
from backupd.errors import BackupdError, ConfigError, DependencyError
from backupd.files import manifest
from backupd.judgement import analytics, appendonly, baseline
from backupd.process import execute
from backupd.sources import postgres
from backupd.sources.stream import StreamFacts
from backupd.state.runs import State

MAX_LISTED = 50
#: Facts kept in the manifest only (per-file detail; too large for state rows and evidence records).
MANIFEST_ONLY = ("heads",)


@dataclass
class Result:
    """Outcome of one target on one destination."""

    target: str
    destination: str
    category: str
    status: str = "failed"  # ok | failed | unavailable | misconfigured
    snapshot_id: str | None = None
    files: int = 0
    bytes: int = 0
    data_added: int = 0
    duration: float = 0.0
    facts: dict = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    engine: dict = field(default_factory=dict)
    #: SHA-256 of the manifest as stored with the snapshot: the backup record announces both (a verifier
    #: drills only announced snapshots, see backupd.actions.announced)
    manifest_sha256: str | None = None
    #: seconds of the target's manifest (walk, hash, judgement), this destination's restic run and the
    #: target's work after the backups (files changed meanwhile, hash cache, clean reference)
    phases: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def tags_for(target, host: str, policy: str) -> dict[str, str]:
    """Tags every data snapshot carries: policy, target, category, host."""
    return {"backupd": None, "policy": policy, "target": target.name, "category": target.category,
            "host": host}


def _tag_list(tags: dict[str, str | None]) -> list[str]:
    """restic tags: key=value, or a bare key where the value is None."""
    return [k if v is None else f"{k}={v}" for k, v in tags.items()]


def _missing_sources(paths: list[str]) -> list[str]:
    """Source paths that do not exist: restic would skip them silently and exit 0."""
    return [p for p in paths if not os.path.lexists(p)]


def _backup_paths(repo, target, tags, host, staging: Path, entries, facts, cancel, on_progress=None) -> tuple:
    missing = _missing_sources(list(target.sources.paths))
    if missing:
        raise SourceUnreadable(f"{len(missing)} source path(s) do not exist; no snapshot was written", missing)
    # No creation time in the document: the snapshot that carries it is dated, and a manifest that
    # does not change between unchanged runs lets restic skip it (see manifest.write).
    doc = manifest.document(target.name, host, entries, facts)
    manifest.write(doc, staging)
    summary = restic_backup.backup_paths(
        repo, list(target.sources.paths) + [str(staging)], excludes=list(target.sources.excludes),
        tags=_tag_list(tags), host=host, cancel=cancel, on_progress=on_progress)
    return summary, facts


def _dump_argv(target, snapshot: str | None = None) -> tuple[list[str], StreamFacts]:
    dump = target.sources.dump
    if dump.kind == "pg_dump":
        argv = postgres.dump_argv(dump.database, dump.host, dump.port, dump.user, fmt=dump.format,
                                  snapshot=snapshot)
        return argv, postgres.DumpFacts() if dump.format == "plain" else StreamFacts()
    return list(dump.command), StreamFacts()


@contextmanager
def _pinned(target):
    """For a custom-format pg_dump: the exported snapshot the dump and its row counts share (counting
    runs while the dump streams); else None."""
    dump = target.sources.dump
    if dump.kind != "pg_dump" or dump.format != "custom":
        yield None
        return
    with postgres.PinnedSnapshot(postgres.conninfo(dump.database, dump.host, dump.port, dump.user)) as pin:
        pin.count()
        yield pin


def _judge_rows(target, rows: dict, reference: dict) -> dict:
    """Table row counts against the last clean generation and against the drift anchor."""
    allowance = dict(target.sources.dump.row_loss_allowance)
    change = analytics.judge_dump(rows, reference.get("rows") or {}, allowance)
    if reference.get("anchor_rows"):
        since = f"since the clean generation of {reference.get('anchor_time', '?')}"
        change.flags += analytics.judge_dump(rows, reference["anchor_rows"], allowance, since).flags
    return change.to_dict()


def _backup_dump(repo, target, tags, host, staging: Path, reference: dict, cancel) -> tuple:
    filename = target.sources.dump.filename
    with _pinned(target) as pin:
        argv, tap = _dump_argv(target, pin.snapshot if pin else None)
        summary, pipe = restic_backup.backup_stream(
            repo, argv, execute.Environment(), filename, tags=_tag_list(tags), host=host, tap=tap,
            cancel=cancel)
        counted = _counted(pin) if pin and summary is not None else None
    if summary is None:
        prod = pipe.producer
        why = ("timed out: it stopped sending" if prod.timed_out else "was cancelled" if prod.cancelled
               else f"exited with {prod.returncode}")
        tail = prod.stderr.strip().splitlines()[-3:]
        raise DumpFailed(f"dump command {argv[0]} {why}; no snapshot was written"
                         + (f": {' | '.join(tail)}" if tail else ""))
    facts = {"files": 1, **tap.facts()}
    if isinstance(counted, str):  # the snapshot is written: keep it, say why it carries no counts
        facts.update(format="custom", rows_error=counted)
    elif counted is not None:
        facts.update(format="custom", rows=counted)
    if "rows" in facts and reference.get("rows"):
        facts["change"] = _judge_rows(target, facts["rows"], reference)
    entry = manifest.Entry(path="/" + filename, size=tap.bytes, mode="", sha256=tap.sha.hexdigest(),
                           mtime_ns=0, type="stdin")
    doc = manifest.document(target.name, host, [entry], facts, snapshot=summary.snapshot_id,
                            created=datetime.now(timezone.utc).isoformat())
    manifest.write(doc, staging)
    companion = {"backupd-manifest": None, "target": target.name, "of": summary.snapshot_id}
    if facts.get("change", {}).get("suspicious"):
        companion["suspect"] = None  # the data snapshot is already written; its companion carries the flag
    held = restic_backup.backup_paths(repo, [str(staging)], excludes=[], host=host, tags=_tag_list(companion))
    facts["manifest_snapshot"] = held.snapshot_id  # a full drill reads the manifest from it at once
    return summary, facts


def _counted(pin) -> dict[str, int] | str:
    """The row counts at the dump's snapshot, or why they could not be taken."""
    try:
        return pin.rows()
    except BackupdError as exc:
        return str(exc)


class DumpFailed(BackupdError):
    """The dump command failed; nothing was committed."""


def _row_reference(cfg: Config, state: State, target: str) -> dict:
    """Row counts of the last clean generation (else of the previous one) and of the drift anchor."""
    ref, anchor = baseline.last_clean(cfg.state_dir, target), baseline.anchor(cfg.state_dir, target)
    if ref is not None and isinstance(ref.get("rows"), dict):
        out = {"rows": ref["rows"]}
    else:
        last = state.history("backup", target, limit=1)
        out = {"rows": last[0].get("facts", {}).get("rows", {}) if last else {}}
    if anchor is not None and isinstance(anchor.get("rows"), dict):
        out.update(anchor_rows=anchor["rows"], anchor_time=anchor.get("time", "?"))
    return out


def _one(cfg: Config, state: State, target, dest_name: str, dest, policy: str, entries, facts,
         cancel, progress=None, preflight: Preflight | None = None) -> Result:
    result = Result(target.name, dest_name, target.category)
    started, t0 = time.time(), time.monotonic()
    staging = cfg.state_dir / "manifests" / target.name
    tags = tags_for(target, cfg.host, policy)
    if facts.get("change", {}).get("suspicious"):
        tags["suspect"] = None
    retry = Retry(cfg.retry_attempts, cfg.retry_wait_seconds, cancel=cancel)
    preflight = preflight or Preflight(cfg, cancel)
    try:
        if cancel is not None and cancel.is_set():  # SIGTERM before this destination's turn (mid-hash)
            raise execute.Interrupted(f"backup {target.name} to {dest_name}: not started, cancelled")
        repo = repository(cfg, dest_name, dest)
        result.engine = restic_feature.describe(repo.restic_binary)
        preflight.require(dest_name, dest)  # one bounded probe per destination and run
        retry.run(lambda: ensure_repository(repo, cfg.state_dir), f"open {dest_name}")
        preflight.clear_owed_locks(dest_name, repo, exclusive_only=True)  # a killed restic of ours left one
        if target.sources.dump is not None:
            reference = _row_reference(cfg, state, target.name)
            run = lambda: _backup_dump(repo, target, tags, cfg.host, staging, reference, cancel)  # noqa: E731
        else:
            step = (lambda done: progress(target.name, dest_name, done)) if progress else None
            run = lambda: _backup_paths(repo, target, tags, cfg.host, staging, entries, facts, cancel, step)  # noqa: E731
        evidence.prepare(cfg)  # the mirror's client loads while restic runs, not after it
        t_restic = time.monotonic()
        with locks.at_work(cfg.state_dir, dest_name):
            summary, written = preflight.run_unlocked(dest_name, repo, lambda: retry.run(
                run, f"backup {target.name} to {dest_name}"), exclusive_only=True)
        result.phases["restic"] = round(time.monotonic() - t_restic, 3)
        result.facts = {k: v for k, v in written.items() if k not in MANIFEST_ONLY}
        if written.get("rows_error"):
            result.notes.append(f"no row counts recorded (drills of this generation will fail): "
                                f"{written['rows_error']}")
        result.status, result.snapshot_id = "ok", _full_id(repo, summary.snapshot_id, result.notes, started)
        result.manifest_sha256 = _staged_sha256(staging)
        result.data_added = summary.data_added
        result.files, result.bytes = result.facts.get("files", 0), result.facts.get("bytes", 0)
    except SourceUnreadable as exc:
        result.error = str(exc)
        result.notes = exc.items[:MAX_LISTED]
        if "no snapshot was written" not in str(exc):
            _mark_incomplete(repo, target, tags, cfg.host)
    except DependencyError as exc:
        result.status, result.error = "unavailable", str(exc)
        if isinstance(exc, StorageUnavailable):  # every retry failed: later targets fail fast
            preflight.mark_down(dest_name, str(exc))
    except RepositoryLocked as exc:  # met a lock after our check: busy (exit 3), not a finding
        result.status, result.error = "unavailable", f"repository busy: {exc}"
    except ConfigError as exc:  # wrong keys or password: exit 2 like every other command
        result.status, result.error = "misconfigured", str(exc)
    except BackupdError as exc:
        result.error = str(exc)
    result.notes = retry.notes + result.notes
    result.duration = round(time.monotonic() - t0, 3)
    state.record("backup", target.name, dest_name, started, result.status, result.snapshot_id,
                 {k: v for k, v in result.to_dict().items() if k in ("facts", "error", "duration", "data_added")})
    evidence.record(cfg, "backup", result.to_dict())
    _report_suspicion(cfg, result)
    return result


def _full_id(repo, snapshot_id: str, notes: list[str], started: float = 0.0) -> str:
    """The snapshot's full id, which the backup record announces (a verifier matches it exactly: an 8-digit
    prefix is the writer's to collide). restic before 0.16 reports a short id: the file restic just wrote
    into its cache names it, else one lock-free listing. When that fails the record keeps the short id: a
    verifier never drills that snapshot but lists it without a finding (announced.SHORT_ID), as long as no
    other snapshot of the host shares the prefix."""
    if len(snapshot_id) == 64:
        return snapshot_id
    cached = restic_snapshots.cached_full_id(repo, snapshot_id, started - 1.0) if repo is not None else None
    if cached:
        return cached
    try:
        found = restic_snapshots.list_snapshots(repo, ids=[snapshot_id], lock=False)
    except BackupdError as exc:
        found, why = [], str(exc)
    else:
        why = f"restic listed {len(found)} snapshot(s) for it"
    if len(found) == 1 and found[0].id.startswith(snapshot_id) and len(found[0].id) == 64:
        return found[0].id
    notes.append(f"the snapshot's full id could not be read ({why}); a verifier will not drill it")
    return snapshot_id


def _staged_sha256(staging: Path) -> str | None:
    """SHA-256 of the manifest the backup just stored (staged in `staging`, unchanged since restic read it)."""
    try:
        return hashlib.sha256((staging / manifest.MANIFEST_NAME).read_bytes()).hexdigest()
    except OSError:
        return None


def _report_suspicion(cfg: Config, result: Result) -> None:
    """A generation that looks like ransomware or mass deletion is recorded and called out."""
    change = result.facts.get("change", {})
    if result.status == "ok" and change.get("suspicious"):
        result.notes += [f"SUSPECT: {flag}" for flag in change["flags"]]
        evidence.record(cfg, "suspect_snapshot", {"target": result.target, "destination": result.destination,
                                                  "snapshot_id": result.snapshot_id, "flags": change["flags"]})


def _mark_incomplete(repo, target, tags, host) -> None:
    """Tag the partial snapshot restic wrote on exit 3 so restores and drills skip it."""
    try:
        restic_tag.add_to_latest(repo, _tag_list(tags), host, "incomplete")
    except BackupdError:
        pass  # the failure is already reported; an untagged partial snapshot stays visible in status


def _reference(cfg: Config, target, cache) -> tuple[dict, dict | None]:
    """(file map of the last clean generation, that generation's baseline record or None). Before any
    clean generation was recorded, the previous generation (the hash cache) is the reference."""
    ref = baseline.last_clean(cfg.state_dir, target.name)
    if ref is not None and isinstance(ref.get("files"), dict):
        return ref["files"], ref
    return {path: [sig[4], sig[0]] for path, sig in cache.old.items()}, None


def _clean_changes(state: State, target: str) -> list[dict]:
    """Change records of the target's recent clean generations: what is usual for it."""
    records = [h["facts"]["change"] for h in state.history("backup", target, limit=4 * analytics.BASELINE_GENERATIONS)
               if isinstance(h.get("facts", {}).get("change"), dict)]
    return analytics.clean_history(records)


def _judge_files(cfg: Config, state: State, target, files, reference: dict) -> dict:
    """The change against the last clean generation, and the cumulative drift since the anchor."""
    current = {e.path: (e.sha256, e.size) for e in files}
    usual = _clean_changes(state, target.name)
    change = analytics.judge(analytics.compare({p: sig[0] for p, sig in reference.items()}, current), usual)
    anchor = baseline.anchor(cfg.state_dir, target.name)
    if anchor and isinstance(anchor.get("files"), dict):
        drift = analytics.compare({p: sig[0] for p, sig in anchor["files"].items()}, current)
        drift_flags = analytics.judge_drift(drift, usual, anchor.get("time", "?"))
        change.flags += drift_flags
        out = {**change.to_dict(), "drift_flagged": bool(drift_flags)}
        out["drift"] = {k: v for k, v in drift.to_dict().items() if k not in ("flags", "suspicious")}
        return out
    return change.to_dict()


def _check_append_only(target, files, reference: dict, ref: dict | None, facts: dict) -> dict:
    """Append-only sources: problems against the last clean generation become flags; returns the block
    digests of the current files for the next check."""
    current = {e.path: [e.sha256, e.size] for e in files}
    ref_blocks = (ref or {}).get("blocks") or {}
    scanned: dict[str, str] = {}
    problems = appendonly.check(reference, ref_blocks, current, scanned) if reference else []
    facts["append_only"] = {"checked": len(reference), "problems": appendonly.to_dicts(problems[:MAX_LISTED])}
    facts["heads"] = appendonly.heads(current)
    if problems:
        change = facts.setdefault("change", analytics.Change().to_dict())
        change["flags"] = change.get("flags", []) + [p.flag() for p in problems[:MAX_LISTED]]
        change["suspicious"] = True
    return appendonly.blocks_for(current, reference, ref_blocks, scanned)


def _file_facts(cfg: Config, state: State, target):
    """Manifest entries and facts of a paths target, hashing only what changed since last time, with the
    change against the last clean generation judged for ransomware-like patterns and, for append-only
    targets, edited logs. Returns (entries, facts, cache, clean-generation candidate)."""
    cache = manifest.HashCache(cfg.state_dir / "hashcache" / f"{target.name}.json")
    entries = manifest.build(list(target.sources.paths), list(target.sources.excludes), cache)
    files = [e for e in entries if e.type == "file"]
    facts = {"files": len(files), "bytes": sum(e.size for e in files)}
    reference, ref = _reference(cfg, target, cache)
    if reference:
        facts["change"] = _judge_files(cfg, state, target, files, reference)
    candidate = {"files": baseline.file_map(files)}
    if "change" in facts:
        candidate["change"] = {k: v for k, v in facts["change"].items() if k != "drift"}
    if target.is_append_only:
        candidate["blocks"] = _check_append_only(target, files, reference, ref, facts)
    return entries, facts, cache, candidate


def _copy_result(cfg: Config, policy_set, target, source: str, dest: str) -> Result:
    """Fill a copy destination from its freshly written primary with restic copy."""
    out = copy_action.copy_target(cfg, policy_set, target, source, dest)
    result = Result(target.name, dest, target.category, status=out["status"], error=out.get("error"),
                    duration=out["duration"], notes=out["notes"] + [f"restic copy from {source}"])
    result.snapshot_id = out["copied"][0] if out["copied"] else None
    return result


def _note_moved(cfg: Config, policy_set, target, results: list[Result], entries) -> None:
    """Files written while restic read them (live logs): their backup-time hash may not be what was
    stored. They are listed in an amendment beside each snapshot, so drills skip rather than fail them."""
    moved = manifest.changed_since(entries)
    if not moved:
        return
    staging = cfg.state_dir / "manifests" / f"{target.name}{manifest.AMEND_SUFFIX}"
    manifest.write({"format": manifest.FORMAT, "target": target.name, "changed_during_backup": moved}, staging)
    for r in results:
        r.facts["changed_during_backup"] = moved[:MAX_LISTED]
        r.notes.append(f"{len(moved)} file(s) changed while being backed up")
        if r.status == "ok" and r.snapshot_id:
            try:
                repo = repository(cfg, r.destination, policy_set.destinations[r.destination])
                restic_backup.backup_paths(repo, [str(staging)], excludes=[], host=cfg.host, tags=_tag_list(
                    {manifest.AMEND_TAG: None, "target": target.name, "of": r.snapshot_id}))
            except BackupdError as exc:
                r.notes.append(f"the list of files changed during the backup was not stored: {exc}")


def backup_target(cfg: Config, state: State, policy_set, target, cancel=None, progress=None,
                  preflight: Preflight | None = None) -> list[Result]:
    """Back up one target to its primary destinations, then fill its copy destinations."""
    entries, facts, cache, candidate = ([], {}, None, {})
    t0 = time.monotonic()
    if target.sources.paths is not None:
        try:
            entries, facts, cache, candidate = _file_facts(cfg, state, target)
        except execute.Interrupted:
            pass  # stopped mid-hash: each destination records its backup as not started (_one)
    manifest_seconds = round(time.monotonic() - t0, 3)
    copies = dict((dst, src) for src, dst in copy_action.pairs(policy_set, target))
    results = [_one(cfg, state, target, name, policy_set.destinations[name], policy_of(policy_set, target.name),
                    entries, facts, cancel, progress, preflight)
               for name in target.destinations if name not in copies]
    ok = {r.destination for r in results if r.status == "ok"}
    t_after = time.monotonic()
    if cache is not None and ok:
        _note_moved(cfg, policy_set, target, results, entries)
        cache.save()
    _remember_clean(cfg, target, results, candidate)
    for r in results:
        r.phases.update(manifest=manifest_seconds, after=round(time.monotonic() - t_after, 3))
    if facts.get("change", {}).get("drift_flagged") and ok:
        notes = judgement.retract_drifted(cfg, policy_set, target, facts["change"]["flags"])
        for r in results:
            r.notes += notes
    for dst, src in copies.items():
        results.append(_copy_result(cfg, policy_set, target, src, dst) if src in ok else
                       Result(target.name, dst, target.category, error=f"not copied: the backup to {src} failed"))
    return results


def _remember_clean(cfg: Config, target, results: list[Result], candidate: dict) -> None:
    """A generation written and judged clean everywhere becomes the reference for the next ones; a flagged
    one never does (it stays suspect until `backupd accept`)."""
    done = [r for r in results if r.status == "ok"]
    if not done or any(r.facts.get("change", {}).get("suspicious") for r in done):
        return
    generation = {**candidate, "snapshots": {r.destination: r.snapshot_id for r in done}}
    if "rows" in done[0].facts:
        generation["rows"] = done[0].facts["rows"]
    baseline.record_clean(cfg.state_dir, target.name, generation)


def run(cfg: Config, policy_set, target_name: str | None = None,
        cancel: execute.Cancel | None = None, progress=None) -> list[Result]:
    """Back up one target (or all) to each of its destinations.
    progress(target, destination, fraction) is called as restic reports progress on file targets."""
    state = State(cfg.state_dir)
    targets = [policy_set.target(target_name)] if target_name else list(policy_set.targets)
    preflight = Preflight(cfg, cancel)  # shared by the targets: a dead destination is probed once per run
    results: list[Result] = []
    for target in targets:
        if cancel is not None and cancel.is_set():
            break  # SIGTERM/SIGINT: what ran is recorded, nothing new starts
        # every child of this target ends by the deadline, and on cancel (engine calls without one too)
        with execute.deadline(cfg.job_timeout_seconds), execute.cancelled_by(cancel):
            results += backup_target(cfg, state, policy_set, target, cancel, progress, preflight)
    return results
