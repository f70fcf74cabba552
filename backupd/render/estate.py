"""The estate report of `evidence pull --all-hosts` (actions/estate.py's document) as estate.csv and a bilingual
estate.html, in the style of an export's report.html."""

from __future__ import annotations

import csv
import io
from html import escape

from backupd.render.evidence_html import conformance
from backupd.render.html import CSS, t as _t, table as _table

OK_DRILL = ("ok", "pass", "passed")
#: The guideline items' statuses (evidence_conformance.MET, NOT_MET, NONE; a unit test keeps them equal).
STATUSES = ("met", "not met", "not evidenced")
NOT_MET = STATUSES[1]


def summary(host: dict) -> dict:
    """Counts for one host row: conformance items by status, backups, generations, drills, audits."""
    items = {s: sum(i["status"] == s for i in host["conformance"]) for s in STATUSES}
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
        not_met = " ".join(i["id"] for i in h["conformance"] if i["status"] == NOT_MET)
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
            + conformance(h["conformance"])
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
