"""The operator's drill report (drills.html): per target, drill time-to-ready against the RTO over time,
then every drill, newest first, with its phases, probes and verdict. Japanese and English, one
self-contained page (inline CSS and SVG, no scripts, no external links).

Input: the drill evidence records' data (what `backupd drill` records), grouped per target.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from backupd.render import charts
from backupd.render.html import CSS, t, table

PHASES = ("select", "restore", "verify", "probes")
#: At most this many drills per target are listed (the chart shows every drill it is given).
LISTED = 100


def _seconds(value) -> str:
    value = charts.number(value)
    return f"{value:.1f}s" if value is not None else "-"


def _when(value) -> str:
    try:
        return charts.parse_time(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return str(value or "")


def _probes(probes: list[dict]) -> str:
    out = []
    for p in probes or []:
        problems = "; ".join(str(x) for x in (p.get("problems") or [])[:3])
        out.append(f"{escape(str(p.get('kind', '?')))}: {escape(str(p.get('status', '?')))}"
                   + (f"<br><small>{escape(problems)}</small>" if problems else ""))
    return "<br>".join(out) or "-"


def _row(d: dict, rto: float | None) -> list[str]:
    phases = d.get("phases") or {}
    ready = charts.number(d.get("service_ready_seconds"))
    share = f" ({ready / rto:.0%} RTO)" if rto and ready is not None else ""
    verdict = str(d.get("verdict") or "?")
    files = f"{d.get('files_restored', '-')}/{d.get('total_files', '-')}"
    return [escape(f"#{d.get('seq', '')}"), escape(_when(d.get("time"))), escape(str(d.get("kind", ""))),
            escape(str(d.get("snapshot_id") or "-")[:8]), escape(files),
            escape(" ".join(f"{p}:{_seconds(phases.get(p))}" for p in PHASES)),
            escape(_seconds(ready) + share + (" *" if d.get("projected_full_seconds") is not None else "")),
            f"<span class='v-{escape(verdict, quote=True)}'>{escape(verdict)}</span>"
            f"<br><small>{escape(str(d.get('status', '')))}</small>",
            _probes(d.get("probes", [])), escape(str(d.get("reason", "")))]


def _target(target: dict) -> str:
    drills, rto = target["drills"], target.get("rto_seconds")
    head = (f"<h2>{escape(target['name'])} <small>RTO {escape(charts.duration_label(rto) if rto else '-')}"
            f" · {t('訓練回数', 'drills')}: {len(drills)}</small></h2>")
    if not drills:
        return head + f"<p>{t('復旧訓練の記録なし', 'no drill records')}</p>"
    chart = charts.drill_chart(target["name"], [{**d, "ready_seconds": d.get("service_ready_seconds")}
                                                for d in drills], rto)
    rows = [_row(d, rto) for d in reversed(drills[-LISTED:])]
    return head + chart + table(
        [t("記録番号", "seq"), t("日時", "time"), t("種別", "kind"), t("スナップショット", "snapshot"),
         t("ファイル", "files"), t("工程別所要時間", "phases"), t("復旧所要時間", "time to ready"),
         t("判定", "verdict"), t("確認項目", "probes"), t("理由", "reason")], rows, raw=True)


def render(host: str, generated: datetime, targets: list[dict]) -> bytes:
    """The page. targets: [{"name", "rto_seconds", "drills": [drill record data + seq + time, oldest first]}]."""
    total = sum(len(x["drills"]) for x in targets)
    head = (f"<!DOCTYPE html><html lang='ja'><head><meta charset='utf-8'><title>backupd drill report "
            f"{escape(host)}</title><style>{CSS}</style></head><body>")
    summary = table([t("項目", "field"), t("値", "value")], [
        [t("ホスト", "host"), host], [t("作成日時", "generated"), _when(generated)],
        [t("訓練記録", "drill records"), str(total)]])
    note = ("<p><small>* 抜き取り訓練は全量復旧の所要時間を推計しています。"
            " * a sample drill projects the time of a full restore. 判定 / verdict: PASS &lt; 80% RTO ≤ WARN ≤ RTO"
            " &lt; FAIL; SUSPECT = 要注意世代 / a flagged generation. 出典: 証跡台帳 / source: the evidence ledger"
            " (<code>backupd evidence verify</code>).</small></p>")
    body = (f"<h1>{t('復旧訓練報告', 'Restore drill report')}</h1>{summary}{note}"
            + "".join(_target(x) for x in targets))
    return (head + body + "</body></html>\n").encode("utf-8")
