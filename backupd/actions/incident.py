"""Incident mode: freeze retention, preserve the compromised state, restore from a clean point,
and keep a time-ordered timeline for the regulator and the police.

While an incident is open, `forget` and `prune` refuse to run on every destination (the guideline:
preserve first; dormant malware means older generations may be the only clean ones). The open incident
is also written as a locked marker to every Object-Lock bucket (storage/freeze.py), so every role that
could forget or prune (the daemon, the maintenance unit with its own state_dir, any other config) sees
it. The freeze fails closed: incident state that cannot be read (EACCES, malformed, storage down) is
treated as an open incident. `extend-locks` stays allowed.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import ClientError

from backupd import evidence
from backupd.actions import drill as drill_action
from backupd.actions import restore as restore_action
from backupd.actions.common import ensure_repository, repository, role_credentials
from backupd.config.loader import Config
from backupd.engine import backup as restic_backup
from backupd.engine.repository import Repository
from backupd.errors import ConfigError, DependencyError, Finding
from backupd.evidence import settings as evidence_settings
from backupd.policy.order import restore_order
from backupd.policy.schema import S3Destination
from backupd.storage import client, freeze

CHECKLIST = (
    "Credentials of TOS, database, VPN and backup identities rotated",
    "Security patches applied to the restored systems and the entry point (e.g. VPN devices)",
    "Infection route identified or contained; forensic copies preserved",
    "TOS maintenance/development vendors informed and restore procedure followed",
    "Restored data reconciled with the physical yard inventory",
    "Regional Transport Bureau, port manager and police informed; no ransom paid",
)


def _dir(cfg: Config) -> Path:
    path = cfg.state_dir / "incident"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def current(cfg: Config) -> dict | None:
    """The incident open on this host, or None. Finding when the state exists but cannot be read
    (EACCES, malformed): never "no incident", since retention must stay frozen then."""
    path = cfg.state_dir / "incident" / "current.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise Finding(f"incident state {path} cannot be read ({why}); forget and prune stay frozen until "
                      "it can") from None
    try:
        inc = json.loads(text)
    except ValueError:
        inc = None
    if not isinstance(inc, dict) or not inc.get("id"):
        raise Finding(f"incident state {path} is malformed; forget and prune stay frozen until it is repaired")
    return inc


def worm_buckets(policy_set, names=None) -> dict[tuple[str, str], tuple[str, S3Destination]]:
    """(endpoint, bucket) -> (destination name, destination) of the Object-Lock S3 destinations (of `names`)."""
    out: dict[tuple[str, str], tuple[str, S3Destination]] = {}
    for name, dest in policy_set.destinations.items():
        if isinstance(dest, S3Destination) and dest.object_lock and (names is None or name in names):
            out.setdefault((dest.endpoint, dest.bucket), (name, dest))
    return out


def guard(cfg: Config, operation: str, policy_set=None, destinations=None) -> None:
    """Refuse a destructive operation (forget, prune) while an incident is open on this host or in any
    WORM bucket of `destinations` (default: all); unreadable state refuses too (exit 1, 3 if unreachable)."""
    try:
        open_incident = current(cfg)
    except Finding as exc:
        raise Finding(f"{operation} refused: {exc}") from None
    if open_incident:
        raise Finding(f"{operation} refused: incident {open_incident['id']} is open since "
                      f"{open_incident['started']}; retention is frozen until `backupd incident end`")
    if policy_set is not None:
        for name, dest in worm_buckets(policy_set, destinations).values():
            _guard_bucket(operation, name, dest, role_credentials(cfg, name, dest))


def _guard_bucket(operation: str, name: str, dest: S3Destination, keys: Path) -> None:
    from backupd.actions.audit import s3_client

    try:
        with client.reachable(f"incident markers in bucket {dest.bucket} ({name})"):
            found = freeze.open_incidents(s3_client(dest, keys), dest.bucket)
    except DependencyError as exc:
        raise DependencyError(f"{operation} refused: {exc}; retention stays frozen until the incident markers "
                              "can be read") from None
    except freeze.Unreadable as exc:
        raise Finding(f"{operation} refused: bucket {dest.bucket} ({name}): {exc}; retention stays frozen") from None
    if found:
        inc = found[0]
        raise Finding(f"{operation} refused: incident {inc['id']} opened on host {inc.get('host')} at "
                      f"{inc.get('started')} is open (marker {inc['key']} in bucket {dest.bucket}); retention "
                      "is frozen until `backupd incident end` on that host")


def _publish(cfg: Config, policy_set, marker: dict) -> list[dict]:
    """Write `marker` (a new version) to every WORM bucket; one status per bucket, never raises for S3."""
    from backupd.actions.audit import s3_client

    out = []
    until = evidence_settings.retain_until(cfg)  # the incident trail is evidence: locked as long
    for name, dest in worm_buckets(policy_set).values():
        row = {"destination": name, "bucket": dest.bucket, "status": "failed"}
        try:
            with client.reachable(f"incident marker in bucket {dest.bucket}"):
                row.update(freeze.write(s3_client(dest), dest.bucket, cfg.host or marker["host"], marker, until),
                           status="written")
        except (DependencyError, ConfigError) as exc:
            row["error"] = str(exc)
        except ClientError as exc:
            row["error"] = f"S3 refused: {client.error_code(exc)}"
        out.append(row)
    return out


def _unwritten(results: list[dict]) -> str:
    return "; ".join(f"{r['destination']}: {r.get('error')}" for r in results if r["status"] != "written")


def note(cfg: Config, event: str, data: dict | None = None) -> dict:
    """Append an entry to the open incident's timeline (and the evidence ledger)."""
    inc = current(cfg)
    entry = {"time": datetime.now(timezone.utc).isoformat(), "event": event, **(data or {})}
    if inc:
        entry["incident"] = inc["id"]
        with open(_dir(cfg) / f"{inc['id']}.timeline.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
    evidence.record(cfg, f"incident.{event}", entry)
    return entry


def start(cfg: Config, reason: str, policy_set=None) -> dict:
    """Open an incident: retention frozen from now on (here and, by marker, in every WORM bucket), locks
    extended where this host may. Run again while it is open, it re-publishes the open marker only.
    DependencyError (exit 3) when a marker could not be written: the incident is open here regardless."""
    inc = current(cfg)
    again = inc is not None
    if not again:
        inc = {"id": datetime.now(timezone.utc).strftime("INC-%Y%m%dT%H%M%SZ-") + secrets.token_hex(2),
               "started": datetime.now(timezone.utc).isoformat(), "reason": reason, "host": cfg.host}
        (_dir(cfg) / "current.json").write_text(json.dumps(inc))
        note(cfg, "start", {"reason": reason, "retention": "forget and prune frozen on every destination"})
    if policy_set is None:
        return inc
    markers = _publish(cfg, policy_set, {**inc, "state": "open"})
    note(cfg, "freeze_marker", {"state": "open", "markers": markers})
    if not again:
        note(cfg, "extend_locks", {"destinations": _extend_locks(cfg, policy_set)})
    if _unwritten(markers):
        raise DependencyError(f"incident {inc['id']} is open on this host, but its freeze marker could not be "
                              f"written ({_unwritten(markers)}): other roles do not see the freeze yet; run "
                              "`backupd incident start` again when the storage answers")
    return {**inc, "markers": markers, **({"republished": True} if again else {})}


def _extend_locks(cfg: Config, policy_set) -> list[dict]:
    """Extend object locks where this host holds maintainer keys; otherwise say who must."""
    from backupd.actions import extend

    out = []
    for name, dest in policy_set.destinations.items():
        keys = getattr(dest, "maintainer_credentials_file", None)
        if not getattr(dest, "object_lock", False):
            continue
        if keys is None or not Path(keys).is_file():
            out.append({"destination": name, "status": "not here: run `backupd extend-locks` with the "
                        "maintainer identity (maintenance host)"})
            continue
        out.append({k: v for k, v in extend.run(cfg, policy_set, name)[0].items()
                    if k in ("destination", "status", "extended", "error")})
    return out


def end(cfg: Config, summary: str, policy_set=None) -> dict:
    """Close the open incident: a "closed" marker version in every WORM bucket first (never a delete); if
    one cannot be written the incident stays open (DependencyError, exit 3) and `end` can be retried."""
    inc = current(cfg)
    if not inc:
        raise ConfigError("no incident is open")
    if policy_set is not None:
        closed = {**inc, "state": "closed", "ended": datetime.now(timezone.utc).isoformat(), "summary": summary}
        markers = _publish(cfg, policy_set, closed)
        note(cfg, "freeze_marker", {"state": "closed", "markers": markers})
        if _unwritten(markers):
            raise DependencyError(f"incident {inc['id']} stays open: the closed marker could not be written "
                                  f"({_unwritten(markers)}); run `backupd incident end` again when the storage "
                                  "answers")
    entry = note(cfg, "end", {"summary": summary})
    (_dir(cfg) / "current.json").unlink()
    (_dir(cfg) / f"{inc['id']}.json").write_text(json.dumps({**inc, "ended": entry["time"]}))
    return {**inc, "ended": entry["time"]}


def forensic_repository(cfg: Config, policy_set, destination: str | None) -> Repository:
    """A separate repository (`<path>-forensics`) beside the destination's backups."""
    name = destination or next(iter(policy_set.destinations))
    if name not in policy_set.destinations:
        raise ConfigError(f"no destination named {name!r}")
    dest = policy_set.destinations[name]
    repo = repository(cfg, name, dest)
    repo.name = f"{name}-forensics"
    repo.url = repo.url.rstrip("/") + "-forensics"
    return repo


def preserve(cfg: Config, policy_set, paths: list[str], destination: str | None = None) -> dict:
    """Snapshot the compromised state before anything is overwritten."""
    inc = current(cfg)
    if not inc:
        raise ConfigError("open an incident first: backupd incident start --reason ...")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"cannot preserve missing path(s): {', '.join(missing)}")
    repo = forensic_repository(cfg, policy_set, destination)
    ensure_repository(repo, cfg.state_dir)
    t0 = time.monotonic()
    summary = restic_backup.backup_paths(repo, [str(Path(p).resolve()) for p in paths], excludes=[],
                                         tags=["forensic", f"incident={inc['id']}"], host=cfg.host)
    return note(cfg, "preserve", {"paths": paths, "repository": repo.name, "snapshot_id": summary.snapshot_id,
                                  "files": summary.total_files_processed, "bytes": summary.total_bytes_processed,
                                  "duration": round(time.monotonic() - t0, 3)})


def _probe(cfg: Config, policy_set, target, res: dict) -> None:
    """Run the target's drill probes on the chosen snapshot (restored again into a sandbox, so the
    probes may start databases without touching the restore); a FAIL fails the restore."""
    if res["status"] != "ok":
        return
    (report,) = drill_action.run(cfg, policy_set, target.name, full=True, snapshot_id=res["snapshot_id"])
    res["probe_verdict"] = report["verdict"]
    res["probes"] = [{k: p[k] for k in ("kind", "status", "problems")} for p in report["probes"]]
    if report["status"] != "ok":
        res["status"] = "failed"
        res["error"] = f"drill probes: {report.get('reason') or report['verdict']}"


def restore_all(cfg: Config, policy_set, to_dir: Path, before: str | None = None,
                keep_setuid: bool = False, destination: str | None = None) -> dict:
    """Restore every target (default: from before the incident started) and verify each one; setuid/setgid
    bits are cleared unless keep_setuid. `destination` (a destination or medium) applies to the targets
    that have it; the others restore from their first destination (or an attached medium when S3 is down)."""
    from backupd.actions import media

    inc = current(cfg)
    before = before or (inc["started"] if inc else "now")
    results = []
    for target in restore_order(policy_set):
        try:
            res = restore_action.run(cfg, policy_set, target.name, to_dir / target.name, before=before,
                                     keep_setuid=keep_setuid, destination=destination if destination and
                                     media.names(policy_set, target, destination) else None)
            _probe(cfg, policy_set, target, res)
        except (Finding, ConfigError) as exc:
            res = {"target": target.name, "status": "failed", "error": str(exc)}
        results.append(res)
        note(cfg, "restore", {k: res.get(k) for k in ("target", "snapshot_id", "explanation", "status", "error",
                                                      "duration", "probe_verdict")})
    checklist = [{"item": item, "signed_off": False} for item in CHECKLIST]
    note(cfg, "pre_resume_checklist", {"items": checklist})
    return {"before": before, "results": results, "checklist": checklist,
            "status": "ok" if all(r["status"] == "ok" for r in results) else "failed"}


def timeline(cfg: Config, incident_id: str | None = None) -> list[dict]:
    """The entries of an incident (default: the open one, else the newest)."""
    ident = incident_id or (current(cfg) or {}).get("id")
    if ident is None:
        files = sorted(_dir(cfg).glob("*.timeline.jsonl"))
        if not files:
            raise ConfigError("no incident recorded on this host")
        path = files[-1]
    else:
        path = _dir(cfg) / f"{ident}.timeline.jsonl"
    if not path.exists():
        raise ConfigError(f"no timeline for incident {ident}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report_markdown(entries: list[dict]) -> str:
    """The timeline as a report for the regulator and the police (time-ordered, UTC)."""
    ident = entries[0].get("incident", "?") if entries else "?"
    lines = [f"# Incident {ident}: timeline", "", "| time (UTC) | event | details |", "|---|---|---|"]
    for e in sorted(entries, key=lambda x: x["time"]):
        details = "; ".join(f"{k}={v}" for k, v in sorted(e.items()) if k not in ("time", "event", "incident")
                            and v not in (None, "", []))
        lines.append(f"| {e['time']} | {e['event']} | {details.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
