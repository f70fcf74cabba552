"""The recovery runbook (actions/runbook.py's document) as Markdown and as one self-contained HTML page
(inline CSS, no scripts, no external links), each label in Japanese and English."""

from __future__ import annotations

from html import escape

from backupd.render.html import CSS, t as _t, table as _table
from backupd.render.time_to_service import describe as describe_terminal

CATEGORY_JA = {"container_data": "コンテナ情報等の動的データ", "system_program": "システムプログラム",
               "control_system": "制御システム", "logs": "ログ", "documentation": "設計書・ネットワーク構成図"}
DETAIL_JA = {"production": "本番", "development": "開発", "evaluation": "評価", "server": "サーバ",
             "network_device": "ネットワーク機器"}


def human_seconds(value: float) -> str:
    """45 s, 12.5 min, 3.2 h."""
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _category(t: dict) -> tuple[str, str]:
    extra = t["environment"] or t["source"]
    ja = CATEGORY_JA.get(t["category"], t["category"]) + (f"（{DETAIL_JA.get(extra, extra)}）" if extra else "")
    return ja, t["category"] + (f" ({extra})" if extra else "")


def projection_label(t: dict) -> str:
    """Projected time to ready at the newest backup's size, against the RTO, with its measured error."""
    p = t.get("projection") or {}
    if p.get("projected_ready_seconds") is None:
        return "未測定 / not measured"
    paired = p.get("projection_error") or {}
    error = (f"実測誤差 / measured error {paired['error']:+.0%}" if paired.get("error") is not None
             else "誤差未測定 / error not yet measured (no full drill after it)")
    return f"{human_seconds(p['projected_ready_seconds'])} / RTO {t['rto'] or '-'} ({p['projection_basis']}; {error})"


def terminal_label(doc: dict) -> str:
    """The whole terminal's projected time to service (render/time_to_service.py), Japanese / English."""
    term = doc["terminal"]
    ja = f"全体の業務再開見込み {human_seconds(term['seconds'])}"
    if term["allowable_downtime_seconds"]:
        ja += f"（許容停止時間 {human_seconds(term['allowable_downtime_seconds'])} の {term['share']:.0%}）"
    return f"{ja} / {describe_terminal(term)}"


def last_drill_label(t: dict) -> str:
    last = t["last_drill"]
    if not last:
        return "未実施 / never drilled"
    return f"{(last['verdict'] or last['status']).upper()} ({last['kind'] or '-'}, {last['time']})"


def to_markdown(doc: dict) -> str:
    """The runbook as Markdown (each label in Japanese / English)."""
    lines = [f"# システム復旧手順書 / System recovery runbook: {doc['site']} ({doc['port']})", "",
             f"> {doc['mandate']['ja']}", ">", f"> {doc['mandate']['en']}", "",
             f"ホスト / host: `{doc['host']}` · 作成 / generated: {doc['generated']} · "
             f"復元基準時刻 / restore before: `{doc['before']}`", "",
             "## 手順 / Steps", ""]
    lines += [f"{i}. {s['ja']} / {s['en']}: `{s['command']}`" for i, s in enumerate(doc["steps"], 1)]
    lines += ["", "## 復旧順序 / Restore order", "", terminal_label(doc), ""]
    for t in doc["targets"]:
        ja, en = _category(t)
        lines += [f"### {t['order']}. {t['name']}", "",
                  f"- 区分 / category: {ja} / {en}",
                  f"- 担当 / owner: {t['owner']}",
                  f"- 保管先 / destinations: {'; '.join(t['destinations'])}",
                  f"- RTO: {t['rto'] or '-'} · RPO: {t['rpo']}",
                  f"- 想定所要時間 / expected duration: {t['expected']['ja']} / {t['expected']['en']}",
                  f"- 推定所要時間 / projected time to ready: {projection_label(t)}",
                  f"- 直近の訓練結果 / last drill: {last_drill_label(t)}",
                  f"- 復元 / restore: `{t['commands']['restore']}`",
                  f"- 訓練 / drill: `{t['commands']['drill']}`", ""]
    lines += ["## 運用再開前チェックリスト / Pre-resume security checklist", ""]
    lines += [f"- [ ] {c['ja']} / {c['en']}" for c in doc["checklist"]]
    return "\n".join(lines) + "\n"


def _target_html(t: dict) -> str:
    ja, en = _category(t)
    rows = [[_t("区分", "category"), f"{ja} / {en}"], [_t("担当", "owner"), t["owner"]],
            [_t("保管先", "destinations"), "; ".join(t["destinations"])],
            ["RTO / RPO", f"{t['rto'] or '-'} / {t['rpo']}"],
            [_t("想定所要時間", "expected duration"), f"{t['expected']['ja']} / {t['expected']['en']}"],
            [_t("推定所要時間", "projected time to ready"), projection_label(t)],
            [_t("直近の訓練結果", "last drill"), last_drill_label(t)]]
    cmds = "".join(f"<pre>{escape(c)}</pre>" for c in (t["commands"]["restore"], t["commands"]["drill"]))
    return (f"<h3>{t['order']}. {escape(t['name'])}</h3>"
            + _table([_t("項目", "field"), _t("値", "value")], rows) + cmds)


def to_html(doc: dict) -> bytes:
    """The runbook as one self-contained HTML page (inline CSS, no scripts, no external links)."""
    title = f"{_t('システム復旧手順書', 'System recovery runbook')}: {escape(doc['site'])} ({escape(doc['port'])})"
    steps = "".join(f"<li>{_t(s['ja'], s['en'])}<pre>{escape(s['command'])}</pre></li>" for s in doc["steps"])
    checklist = "".join(f"<li>☐ {_t(c['ja'], c['en'])}</li>" for c in doc["checklist"])
    body = (f"<h1>{title}</h1><p class='mandate'>{escape(doc['mandate']['ja'])}<br>{escape(doc['mandate']['en'])}</p>"
            f"<p><small>{_t('ホスト', 'host')}: {escape(str(doc['host']))} · {_t('作成', 'generated')}: "
            f"{escape(doc['generated'])} · {_t('復元基準時刻', 'restore before')}: {escape(doc['before'])}</small></p>"
            f"<h2>{_t('手順', 'Steps')}</h2><ol>{steps}</ol>"
            f"<h2>{_t('復旧順序', 'Restore order')}</h2><p>{escape(terminal_label(doc))}</p>" + "".join(_target_html(t) for t in doc["targets"])
            + f"<h2>{_t('運用再開前チェックリスト', 'Pre-resume security checklist')}</h2>"
              f"<ul class='checklist'>{checklist}</ul>")
    css = CSS + "\n.mandate{border:2px solid #a00;padding:.6em;background:#fff4f4}pre{background:#f4f4f8;padding:4px}" \
                "\n.checklist{list-style:none}"
    return (f"<!DOCTYPE html><html lang='ja'><head><meta charset='utf-8'><title>backupd runbook "
            f"{escape(doc['site'])}</title><style>{css}</style></head><body>{body}</body></html>\n").encode("utf-8")
