"""report.html of an evidence export: one self-contained page (inline CSS, no scripts, no external links) in
Japanese and English, from the report.json document (actions/evidence_report.py builds it)."""

from __future__ import annotations

from datetime import timedelta
from html import escape

from backupd.render import charts
from backupd.render.html import CSS, t as _t, table as _table
STATUS_JA = {"met": "充足", "not met": "未充足", "not evidenced": "証跡なし"}


def conformance(items: list[dict]) -> str:
    """The guideline items table (also in the estate report)."""
    rows = []
    for i in items:
        css = i["status"].replace(" ", "-")
        seqs = ", ".join(f"#{s}" for s in i["seqs"][-12:]) or "-"
        rows.append([escape(i["id"]), f"{escape(i['title_ja'])}<br><small>{escape(i['title_en'])}</small>",
                     f"<span class='{css}'>{escape(STATUS_JA.get(i['status'], i['status']))} / "
                     f"{escape(i['status'])}</span>", escape(i["why"]), escape(seqs)])
    return _table([_t("項目", "item"), _t("内容", "requirement"), _t("判定", "status"), _t("根拠", "why"),
                   _t("記録番号", "record seq")], rows, raw=True)


def _charts(t: dict, now: str) -> str:
    """Restore points against the min_history window, and drill time-to-ready against the RTO."""
    lanes = [(d["destination"], d["snapshots"]) for d in t["destinations"]]
    out = charts.retention_chart(t["name"], lanes, timedelta(seconds=t.get("min_history_seconds") or 0),
                                 charts.parse_time(now))
    if t["drills"]:
        out += charts.drill_chart(t["name"], [{**d, "ready_seconds": d.get("service_ready_seconds")}
                                              for d in t["drills"]], t.get("rto_seconds"))
    return out


def _target(t: dict, now: str) -> str:
    rows = [[d["destination"], d["kind"] + (" (Object Lock)" if d["object_lock"] else ""), d["count"],
             d["oldest_restorable"] or "-", d["newest"] or "-",
             f"{d['oldest_age_days']} d" if d["oldest_age_days"] is not None else "-",
             ("OK" if d["meets_min_history"] else "NG") + f" ({t['min_history']})",
             " ".join(f"{k}:{v}" for k, v in d["generations"].items()), d["error"] or ""]
            for d in t["destinations"]]
    drills = [[d["seq"], d["time"], f"{d['status']} {d.get('verdict') or ''}", d.get("snapshot_id") or "",
               d.get("attested_by") or "-"] for d in t["drills"]]
    last = t["backups"]["last_ok"]
    return (f"<h3>{escape(t['name'])} <small>{escape(t['category'])} · RPO {escape(t['frequency'])}"
            f" · RTO {escape(t['rto'] or '-')} · {escape(t['owner'])}</small></h3>" + _charts(t, now)
            + _table([_t("保管先", "destination"), _t("種別", "kind"), _t("世代数", "snapshots"),
                      _t("最古の復元点", "oldest restorable"), _t("最新", "newest"), _t("経過", "age"),
                      _t("最低保持期間", "min history"), _t("経過別世代", "generations by age"),
                      _t("エラー", "error")], rows)
            + f"<p>{_t('バックアップ成功', 'backups ok')}: {t['backups']['ok']}, "
              f"{_t('失敗', 'failed')}: {t['backups']['failed']}, "
              f"{_t('最終成功', 'last ok')}: {escape(last['time'] if last else '-')}</p>"
            + (_table([_t("記録番号", "seq"), _t("日時", "time"), _t("結果", "result"), _t("スナップショット", "snapshot"),
                       _t("署名した役割", "attested by")],
                      drills) if drills else f"<p>{_t('復旧訓練の記録なし', 'no drill records')}</p>")
            + _rotations(t))


def _rotations(t: dict) -> str:
    """Every rotation of the target's offline copies (media-sync records), for targets that keep them."""
    if not t.get("offline_max_age_seconds"):
        return ""
    rows = [[r["seq"], r["time"], r["medium"], r["status"], r["read_back"], r.get("newest_time") or "-",
             r.get("generations") if r.get("generations") is not None else "-"] for r in t.get("offline_rotations", [])]
    if not rows:
        return f"<p>{_t('オフライン媒体への保管記録なし', 'no offline rotation records')}</p>"
    return _table([_t("記録番号", "seq"), _t("日時", "time"), _t("媒体", "medium"), _t("結果", "result"),
                   _t("読み戻し", "read-back"), _t("最新世代", "newest generation"), _t("世代数", "generations")], rows)


def render(report: dict) -> bytes:
    """The HTML page of a report.json document."""
    led = report["ledger"]
    head = (f"<!DOCTYPE html><html lang='ja'><head><meta charset='utf-8'><title>backupd evidence report "
            f"{escape(report['host'])}</title><style>{CSS}</style></head><body>")
    summary = _table([_t("項目", "field"), _t("値", "value")], [
        [_t("ホスト", "host"), report["host"]], [_t("サイト", "site"), f"{report['site']} ({report['port']})"],
        [_t("対象期間", "period"), f"{report['period']['since']} — {report['period']['until']}"],
        [_t("記録", "records"), f"seq {led['first_seq']}–{led['last_seq']} ({led['records']})"],
        [_t("署名鍵", "signing key"), f"Ed25519 {led['key_fingerprint']}"],
        [_t("台帳の検証", "ledger check"), "OK" if led["chain_ok"] else "NG: " + "; ".join(led["problems"][:5])],
        [_t("作成日時", "generated"), report["generated"]]])
    note = ("<p><small>本報告は証跡を示すものであり、ガイドライン適合を自ら主張するものではありません。"
            " This report shows evidence; it does not claim compliance. Verify it offline with "
            "<code>backupd evidence verify BUNDLE --public-key KEY</code>.</small></p>")
    body = (f"<h1>{_t('バックアップ証跡報告書', 'Backup evidence report')}</h1>{summary}{note}"
            f"<h2>{_t('ガイドライン項目', 'Guideline items')}</h2>{conformance(report.get('conformance', []))}"
            f"<h2>{_t('対象別の状況', 'Per target')}</h2>"
            + "".join(_target(t, report["generated"]) for t in report["targets"]))
    return (head + body + "</body></html>\n").encode("utf-8")
