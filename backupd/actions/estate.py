"""The estate report of `evidence pull --all-hosts`: every host's mirrored ledger in one page, per site and host.

Input: the pull result (each host's ledger rebuilt from the WORM mirror and verified), the puller's policy set
(the targets every host is held to) and its keyring. Everything is judged from the signed records alone, so
read-only auditor keys suffice (no repository password): generations are the snapshots that backup records
name as written, less those a forget record removed. Output: estate.json, estate.csv and a bilingual
estate.html in the pull directory (render/estate.py writes the last two).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from backupd.actions import evidence_conformance
from backupd.actions.evidence_report import generations
from backupd.evidence import keyring as keyring_mod
from backupd.evidence import record_format
from backupd.evidence.canonical import iso
from backupd.policy.durations import format_duration
from backupd.render.estate import render, summary, to_csv


def _records(ledger: str | None) -> list[dict]:
    """The parsable records of a pulled ledger (damaged lines are already named by its verification)."""
    if not ledger:
        return []
    out = []
    with open(ledger, "rb") as handle:  # line by line: a ledger may hold years of records
        for line in handle:
            try:
                out.append(record_format.parse(line.rstrip(b"\n")))
            except ValueError:
                continue
    return out


def _data(rec: dict) -> dict:
    return rec["data"] if isinstance(rec.get("data"), dict) else {}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _site(records: list[dict], policy_set) -> tuple[str, str]:
    """(site, where it came from): the newest runbook record's site, else the puller's policy."""
    for rec in reversed(records):
        if rec["kind"] == "runbook" and _data(rec).get("site"):
            return str(_data(rec)["site"]), "runbook record"
    return policy_set.site.name, "auditor policy"


def _destinations(records: list[dict], target: str, policy_set, now: datetime) -> list[dict]:
    """Per destination: snapshots recorded as written for target, less those a forget record removed."""
    written: dict[str, dict[str, datetime]] = {}
    for rec in records:
        data = _data(rec)
        if data.get("target") != target or not data.get("destination"):
            continue
        snaps = written.setdefault(data["destination"], {})
        if rec["kind"] == "backup" and data.get("status") == "ok" and data.get("snapshot_id"):
            snaps[data["snapshot_id"]] = _when(rec["time"])
        elif rec["kind"] == "forget" and data.get("status") == "ok" and not data.get("dry_run"):
            for sid in data.get("remove") or []:
                snaps.pop(sid, None)
    rows = []
    for name, snaps in sorted(written.items()):
        dest = policy_set.destinations.get(name)
        oldest = min(snaps.values()) if snaps else None
        rows.append({"destination": name, "count": len(snaps), "generations": generations(list(snaps.values()), now),
                     "object_lock": bool(getattr(dest, "object_lock", False)),
                     "offline": bool(getattr(dest, "offline", False)),
                     "oldest_restorable": iso(oldest) if oldest else None,
                     "newest": iso(max(snaps.values())) if snaps else None,
                     "oldest_age_days": round((now - oldest).total_seconds() / 86400, 2) if oldest else None})
    return rows


def _history(records: list[dict], kind: str, target: str) -> list[dict]:
    out = []
    for rec in records:
        data = _data(rec)
        if rec["kind"] == kind and data.get("target") == target:
            status = data.get("status") or data.get("verdict") or "unknown"
            out.append({"seq": rec["seq"], "time": rec["time"], "status": str(status),
                        "verdict": data.get("verdict"), "destination": data.get("destination"),
                        "snapshot_id": data.get("snapshot_id")})
    return out


def _target(t, records: list[dict], policy_set, now: datetime, attested: dict[int, str | None]) -> dict:
    backups, drills = _history(records, "backup", t.name), _history(records, "drill", t.name)
    for drill in drills:
        drill["attested_by"] = attested.get(drill["seq"])
    return {"name": t.name, "category": t.category, "source": t.source, "frequency": format_duration(t.frequency),
            "destinations": _destinations(records, t.name, policy_set, now),
            "backups": {"ok": sum(b["status"] == "ok" for b in backups),
                        "failed": sum(b["status"] != "ok" for b in backups),
                        "last_ok": next((b for b in reversed(backups) if b["status"] == "ok"), None),
                        "seqs": [b["seq"] for b in backups]},
            "drills": drills}


def _audits(records: list[dict]) -> list[dict]:
    """Storage audits and repository checks: seq, time, kind, status (per destination for audits)."""
    out = []
    for rec in records:
        data = _data(rec)
        if rec["kind"] == "storage_audit":
            per = {d.get("destination"): d.get("status") for d in data.get("destinations") or []}
            status = "ok" if all(s in ("ok", "skipped") for s in per.values()) else "finding"
            out.append({"seq": rec["seq"], "time": rec["time"], "kind": "storage_audit", "status": status,
                        "destinations": per})
        elif rec["kind"] == "check":
            out.append({"seq": rec["seq"], "time": rec["time"], "kind": "check", "status": data.get("status"),
                        "destinations": {data.get("destination"): data.get("status")}})
    return out


def host_report(pulled: dict, policy_set, now: datetime, ring) -> dict:
    """One host of the estate: verification, site, targets (the policy's), audits, conformance."""
    records = _records(pulled["ledger"])
    site, site_from = _site(records, policy_set)
    attested = {a["seq"]: a["role"] for a in pulled.get("attestations", [])}
    targets = [_target(t, records, policy_set, now, attested) for t in policy_set.targets]
    expected = {t.name for t in policy_set.targets}
    others = sorted({_data(r).get("target") for r in records if r["kind"] == "backup"} - expected - {None})
    report = {"targets": targets, "specific_port": policy_set.site.specific_port,
              "keyring": keyring_mod.describe(ring), "attestations": pulled.get("attestations", [])}
    # the records come from the WORM mirror itself, so they are mirrored by construction
    conformance = evidence_conformance.evaluate(report, records, now, mirrored=bool(records))
    return {"host": pulled["host"], "site": site, "site_from": site_from, "verified": pulled["ok"],
            "problems": pulled["problems"], "records": pulled["records"], "key_fingerprint": pulled["key_fingerprint"],
            "first_time": records[0]["time"] if records else None,
            "last_time": records[-1]["time"] if records else None,
            "targets": targets, "other_targets": others, "audits": _audits(records), "conformance": conformance}


def build(pull_doc: dict, policy_set, keyring: Path | None = None, now: datetime | None = None) -> dict:
    """estate.json: sites -> hosts, each with its host_report."""
    now = now or datetime.now(timezone.utc)
    ring = keyring_mod.load(keyring) if keyring else None
    hosts = [host_report(h, policy_set, now, ring) for h in pull_doc["hosts"]]
    sites: dict[str, list[str]] = {}
    for h in hosts:
        sites.setdefault(h["site"], []).append(h["host"])
    return {"generated": iso(now), "bucket": pull_doc["bucket"], "policy_site": policy_set.site.name,
            "hosts_verified": sum(h["verified"] for h in hosts), "hosts": hosts,
            "sites": {s: sorted(names) for s, names in sorted(sites.items())}}


def write(pull_doc: dict, policy_set, out_dir: Path, keyring: Path | None = None) -> dict:
    """Build the estate report and write estate.json, .csv and .html to out_dir; return a short summary."""
    estate = build(pull_doc, policy_set, keyring)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "estate.json", "csv": out_dir / "estate.csv", "html": out_dir / "estate.html"}
    files["json"].write_text(json.dumps(estate, indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    files["csv"].write_bytes(to_csv(estate))
    files["html"].write_bytes(render(estate))
    return {"files": {k: str(v) for k, v in files.items()}, "sites": estate["sites"],
            "hosts": {h["host"]: {"site": h["site"], "verified": h["verified"], **summary(h)} for h in estate["hosts"]}}
