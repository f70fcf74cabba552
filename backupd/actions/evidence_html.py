"""report.html: one self-contained page (inline CSS, no scripts, no external links) in Japanese and English."""

from __future__ import annotations

from html import escape

STATUS_JA = {"met": "充足", "not met": "未充足", "not evidenced": "証跡なし"}
CSS = """body{font-family:'Noto Sans CJK JP','Hiragino Sans',sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:2px solid #335;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #999;padding:3px 7px}
th{background:#eef}.met{background:#dfd}.not-met{background:#fdd}.not-evidenced{background:#ffd}
.ok{color:#060}.bad{color:#a00}small{color:#555}"""


def _t(ja: str, en: str) -> str:
    return f"{escape(ja)} / {escape(en)}"


def _table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c if raw else escape(str(c))}</td>" for c in row) + "</tr>")
    return "".join(out) + "</table>"


def _conformance(items: list[dict]) -> str:
    rows = []
    for i in items:
        css = i["status"].replace(" ", "-")
        seqs = ", ".join(f"#{s}" for s in i["seqs"][-12:]) or "-"
        rows.append([escape(i["id"]), f"{escape(i['title_ja'])}<br><small>{escape(i['title_en'])}</small>",
                     f"<span class='{css}'>{escape(STATUS_JA.get(i['status'], i['status']))} / "
                     f"{escape(i['status'])}</span>", escape(i["why"]), escape(seqs)])
    return _table([_t("項目", "item"), _t("内容", "requirement"), _t("判定", "status"), _t("根拠", "why"),
                   _t("記録番号", "record seq")], rows, raw=True)


def _target(t: dict) -> str:
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
            f" · RTO {escape(t['rto'] or '-')} · {escape(t['owner'])}</small></h3>"
            + _table([_t("保管先", "destination"), _t("種別", "kind"), _t("世代数", "snapshots"),
                      _t("最古の復元点", "oldest restorable"), _t("最新", "newest"), _t("経過", "age"),
                      _t("最低保持期間", "min history"), _t("経過別世代", "generations by age"),
                      _t("エラー", "error")], rows)
            + f"<p>{_t('バックアップ成功', 'backups ok')}: {t['backups']['ok']}, "
              f"{_t('失敗', 'failed')}: {t['backups']['failed']}, "
              f"{_t('最終成功', 'last ok')}: {escape(last['time'] if last else '-')}</p>"
            + (_table([_t("記録番号", "seq"), _t("日時", "time"), _t("結果", "result"), _t("スナップショット", "snapshot"),
                       _t("署名した役割", "attested by")],
                      drills) if drills else f"<p>{_t('復旧訓練の記録なし', 'no drill records')}</p>"))


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
            f"<h2>{_t('ガイドライン項目', 'Guideline items')}</h2>{_conformance(report.get('conformance', []))}"
            f"<h2>{_t('対象別の状況', 'Per target')}</h2>" + "".join(_target(t) for t in report["targets"]))
    return (head + body + "</body></html>\n").encode("utf-8")
