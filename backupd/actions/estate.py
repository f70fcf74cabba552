"""The estate report of `evidence pull --all-hosts`: every host's mirrored ledger in one page, per site and host.

Input: the pull result (each host's ledger rebuilt from the WORM mirror and verified), the puller's policy set
(the targets every host is held to) and its keyring. Everything is judged from the signed records alone, so
read-only auditor keys suffice (no repository password): generations are the snapshots that backup records
name as written, less those a forget record removed. Output: estate.json, estate.csv and a bilingual
estate.html in the pull directory, in the style of an export's report.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from backupd.actions import evidence_conformance
from backupd.actions.evidence_html import CSS, _conformance, _t, _table
from backupd.actions.evidence_report import generations
from backupd.evidence import keyring as keyring_mod
from backupd.evidence import record_format
from backupd.evidence.canonical import iso
from backupd.policy.durations import format_duration

OK_DRILL = ("ok", "pass", "passed")


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


def _ring_doc(ring) -> dict | None:
    if ring is None:
        return None
    return {"file": ring.path, "roles": {n: {"kinds": sorted(r.kinds) if r.kinds is not None else ["*"],
                                             "verifier": r.verifier, "keys": r.kids} for n, r in ring.roles.items()}}


def host_report(pulled: dict, policy_set, now: datetime, ring) -> dict:
    """One host of the estate: verification, site, targets (the policy's), audits, conformance."""
    records = _records(pulled["ledger"])
    site, site_from = _site(records, policy_set)
    attested = {a["seq"]: a["role"] for a in pulled.get("attestations", [])}
    targets = [_target(t, records, policy_set, now, attested) for t in policy_set.targets]
    expected = {t.name for t in policy_set.targets}
    others = sorted({_data(r).get("target") for r in records if r["kind"] == "backup"} - expected - {None})
    report = {"targets": targets, "specific_port": policy_set.site.specific_port,
              "keyring": _ring_doc(ring), "attestations": pulled.get("attestations", [])}
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


def summary(host: dict) -> dict:
    """Counts for one host row: conformance items by status, backups, generations, drills, audits."""
    items = {s: sum(i["status"] == s for i in host["conformance"])
             for s in (evidence_conformance.MET, evidence_conformance.NOT_MET, evidence_conformance.NONE)}
    drills = [d for t in host["targets"] for d in t["drills"]]
    audits = host["audits"]
    return {"conformance": items, "backups_ok": sum(t["backups"]["ok"] for t in host["targets"]),
            "backups_failed": sum(t["backups"]["failed"] for t in host["targets"]),
            "generations": sum(d["count"] for t in host["targets"] for d in t["destinations"]),
            "drills": len(drills), "drills_passed": sum(d["status"] in OK_DRILL for d in drills),
            "last_drill": max((d["time"] for d in drills), default=None), "audits": len(audits),
            "last_audit": audits[-1] if audits else None}


CSV_COLUMNS = ("site", "host", "verified", "records", "target", "category", "destination", "generations",
               "oldest_restorable", "newest", "backups_ok", "backups_failed", "drills", "last_drill_status",
               "last_audit", "last_audit_status", "conformance_not_met")


def to_csv(estate: dict) -> bytes:
    """estate.csv: one row per site, host, target and destination (a target never written: one empty row)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for h in estate["hosts"]:
        audit = h["audits"][-1] if h["audits"] else {}
        not_met = " ".join(i["id"] for i in h["conformance"] if i["status"] == evidence_conformance.NOT_MET)
        for t in h["targets"]:
            last = t["drills"][-1] if t["drills"] else {}
            for d in t["destinations"] or [{}]:
                writer.writerow([h["site"], h["host"], h["verified"], h["records"], t["name"], t["category"],
                                 d.get("destination", ""), d.get("count", 0), d.get("oldest_restorable") or "",
                                 d.get("newest") or "", t["backups"]["ok"], t["backups"]["failed"], len(t["drills"]),
                                 last.get("status", ""), audit.get("time", ""), audit.get("status", ""), not_met])
    return buf.getvalue().encode("utf-8")


def _host_section(h: dict) -> str:
    s = summary(h)
    rows = [[t["name"], t["category"], d["destination"], d["count"], d["oldest_restorable"] or "-",
             d["newest"] or "-", " ".join(f"{k}:{v}" for k, v in d["generations"].items()),
             f"{t['backups']['ok']} / {t['backups']['failed']}",
             f"{sum(x['status'] in OK_DRILL for x in t['drills'])} / {len(t['drills'])}"]
            for t in h["targets"] for d in (t["destinations"] or [{"destination": "-", "count": 0,
                                                                    "oldest_restorable": None, "newest": None,
                                                                    "generations": {}}])]
    audits = [[a["seq"], a["time"], a["kind"], a["status"],
               ", ".join(f"{k}: {v}" for k, v in a["destinations"].items())] for a in h["audits"][-10:]]
    state = "OK" if h["verified"] else "NG: " + "; ".join(h["problems"][:5])
    return (f"<h3>{escape(h['host'])} <small>{escape(h['site'])} ({escape(h['site_from'])}) · "
            f"{_t('台帳の検証', 'ledger check')}: {escape(state)} · {h['records']} records · "
            f"Ed25519 {escape(str(h['key_fingerprint']))}</small></h3>"
            + _conformance(h["conformance"])
            + _table([_t("対象", "target"), _t("分類", "category"), _t("保管先", "destination"),
                      _t("世代数", "generations"), _t("最古の復元点", "oldest restorable"), _t("最新", "newest"),
                      _t("経過別世代", "by age"), _t("成功/失敗", "backups ok/failed"),
                      _t("訓練 合格/全体", "drills passed/all")], rows)
            + (_table([_t("記録番号", "seq"), _t("日時", "time"), _t("種別", "kind"), _t("結果", "status"),
                       _t("保管先", "destinations")], audits) if audits
               else f"<p>{_t('監査の記録なし', 'no audit records')}</p>")
            + (f"<p>{_t('方針外の対象', 'targets outside the policy')}: {escape(', '.join(h['other_targets']))}</p>"
               if h["other_targets"] else "")
            + f"<p><small>{s['drills_passed']}/{s['drills']} drills passed, {s['audits']} audit(s)</small></p>")


def render(estate: dict) -> bytes:
    """estate.html: per site a summary table of its hosts, then each host's conformance, generations, audits."""
    head = (f"<!DOCTYPE html><html lang='ja'><head><meta charset='utf-8'><title>backupd estate report "
            f"{escape(estate['bucket'])}</title><style>{CSS}</style></head><body>")
    body = [f"<h1>{_t('全拠点の証跡報告書', 'Estate evidence report')}</h1>",
            f"<p>s3://{escape(estate['bucket'])}/evidence/ · {_t('作成日時', 'generated')} {escape(estate['generated'])}"
            f" · {estate['hosts_verified']}/{len(estate['hosts'])} {_t('台帳検証済み', 'ledgers verified')}</p>",
            "<p><small>本報告は証跡を示すものであり、ガイドライン適合を自ら主張するものではありません。 This report "
            "shows the mirrored, signed records; it does not claim compliance.</small></p>"]
    by_host = {h["host"]: h for h in estate["hosts"]}
    for site, names in estate["sites"].items():
        rows = []
        for name in names:
            h, s = by_host[name], summary(by_host[name])
            c = s["conformance"]
            rows.append([name, "OK" if h["verified"] else "NG", h["records"],
                         f"{c['met']} / {c['not met']} / {c['not evidenced']}",
                         f"{s['backups_ok']} / {s['backups_failed']}", s["generations"],
                         f"{s['drills_passed']} / {s['drills']}", s["last_drill"] or "-",
                         (s["last_audit"] or {}).get("status", "-")])
        body.append(f"<h2>{_t('拠点', 'site')}: {escape(site)}</h2>")
        body.append(_table([_t("ホスト", "host"), _t("台帳", "ledger"), _t("記録", "records"),
                            _t("充足/未充足/証跡なし", "met/not met/not evidenced"),
                            _t("成功/失敗", "backups ok/failed"), _t("世代数", "generations"),
                            _t("訓練 合格/全体", "drills passed/all"), _t("最終訓練", "last drill"),
                            _t("最終監査", "last audit")], rows))
        body += [_host_section(by_host[name]) for name in names]
    return (head + "".join(body) + "</body></html>\n").encode("utf-8")


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
