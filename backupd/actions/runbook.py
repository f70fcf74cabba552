"""`backupd runbook`: the system recovery procedure (Markdown + self-contained HTML, Japanese and English).

Generated from the policies (restore order, owners, destinations, RTO) and the drill history in state
(expected duration = last full drill's time to service-ready, else a sample drill's projection). The
guideline (M4, 1.8.2) requires this procedure to be shared in advance with the TOS vendors.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from backupd import evidence
from backupd.actions import incident, time_to_service
from backupd.actions.evidence_html import CSS, _t, _table
from backupd.config import Config
from backupd.errors import ConfigError
from backupd.evidence.canonical import iso, sha256
from backupd.policy.durations import format_duration
from backupd.state import State

MANDATE_JA = ("港湾ガイドライン（セキュリティ責任者編 1.8.2）は、TOSの保守・開発ベンダーと事前に共有した"
              "システム復旧手順を必須としています。本書はその手順書です。インシデントの前にベンダーと共有し、"
              "BCP訓練で使用してください。")
MANDATE_EN = ("The port-sector guideline (security manager edition 1.8.2) makes a system recovery procedure "
              "shared in advance with the TOS maintenance/development vendors mandatory. This is that procedure: "
              "share it with the vendors before an incident and use it in BCP training.")
NOT_MEASURED = ("未計測 — 復旧訓練を実施してください", "not measured — run a drill")
CATEGORY_JA = {"container_data": "コンテナ情報等の動的データ", "system_program": "システムプログラム",
               "control_system": "制御システム", "logs": "ログ", "documentation": "設計書・ネットワーク構成図"}
DETAIL_JA = {"production": "本番", "development": "開発", "evaluation": "評価", "server": "サーバ",
                  "network_device": "ネットワーク機器"}
#: Japanese of incident.CHECKLIST (an item without a translation is shown in English only).
CHECKLIST_JA = {
    incident.CHECKLIST[0]: "TOS・データベース・VPN・バックアップの各認証情報を変更した",
    incident.CHECKLIST[1]: "復旧したシステムと侵入口（VPN機器等）にセキュリティパッチを適用した",
    incident.CHECKLIST[2]: "感染経路を特定または封じ込め、フォレンジック用の複製を保全した",
    incident.CHECKLIST[3]: "TOS保守・開発ベンダーに連絡し、復旧手順に従った",
    incident.CHECKLIST[4]: "復旧したデータを実際のヤード在庫と照合した",
    incident.CHECKLIST[5]: "地方運輸局・港湾管理者・警察に連絡した。身代金は支払っていない",
}
STEPS = (
    ("インシデントを開始し保持を凍結する", "Open the incident (retention is frozen)",
     "backupd incident start --reason '<what was observed>'"),
    ("上書き前に侵害された状態を保全する", "Preserve the compromised state before overwriting it",
     "backupd incident preserve --path <compromised path>"),
    ("下表の順に各対象を復元し検証する", "Restore and verify each target in the order below",
     "backupd incident restore --to <RESTORE_DIR>"),
    ("再開前チェックリストを確認し記録する", "Sign off the pre-resume checklist",
     "backupd incident note 'signed off: ...'"),
    ("インシデントを終了する", "Close the incident", "backupd incident end --summary '<how it ended>'"),
)


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _when(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, timezone.utc))[:19] + "Z"


def expected_duration(runs: list[dict]) -> dict:
    """From drill runs (newest first): the last full drill's measured time, else a sample's projection."""
    timed = [r for r in runs if r["status"] != "unavailable" and r["detail"].get("service_ready_seconds")]
    full = next((r for r in timed if r["detail"].get("kind") == "full"), None)
    chosen = full or next(iter(timed), None)
    if chosen is None:
        return {"seconds": None, "basis": "not measured", "ja": NOT_MEASURED[0], "en": NOT_MEASURED[1]}
    secs, when = float(chosen["detail"]["service_ready_seconds"]), _when(chosen["started"])
    if full:
        return {"seconds": secs, "basis": "full drill", "drill_time": when,
                "ja": f"{_seconds(secs)}（{when} のフル復旧訓練で実測）",
                "en": f"{_seconds(secs)} (measured by the full drill of {when})"}
    return {"seconds": secs, "basis": "projected", "drill_time": when,
            "ja": f"{_seconds(secs)}（{when} のサンプル訓練からの推定）",
            "en": f"{_seconds(secs)} (projected from the sample drill of {when})"}


def _destination(name: str, dest) -> str:
    if dest.kind == "s3":
        return f"{name}: s3://{dest.bucket}/{dest.path}" + (" (Object Lock)" if dest.object_lock else "")
    return f"{name}: {dest.path}" + (" (offline)" if dest.offline else "")


def _commands(cfg: Config, name: str, before: str) -> dict:
    conf = f" --config {shlex.quote(str(cfg.path))}" if cfg.path else ""
    quoted = shlex.quote(name)
    return {"restore": f"backupd restore{conf} --target {quoted} --to <RESTORE_DIR>/{quoted} --before {before}",
            "drill": f"backupd drill{conf} --target {quoted} --full"}


def _target(cfg: Config, state: State, policy_set, target, order: int, before: str) -> dict:
    runs = state.runs("drill", target.name)
    last = runs[0] if runs else None
    return {"order": order, "name": target.name, "category": target.category, "environment": target.environment,
            "source": target.source, "owner": target.owner, "description": target.description,
            "destinations": [_destination(d, policy_set.destinations[d]) for d in target.destinations],
            "commands": _commands(cfg, target.name, before),
            "rto": format_duration(target.rto) if target.rto else None,
            "rpo": format_duration(target.frequency), "expected": expected_duration(runs),
            "projection": time_to_service.for_target(state, target),
            "last_drill": {"time": _when(last["started"]), "status": last["status"],
                           "kind": last["detail"].get("kind"), "verdict": last["detail"].get("verdict")}
            if last else None}


def build(cfg: Config, policy_set, now: datetime | None = None) -> dict:
    """The runbook as a plain dict: site, steps, targets in restore order, checklist."""
    now = now or datetime.now(timezone.utc)
    open_incident = incident.current(cfg)
    before = open_incident["started"] if open_incident else "<INCIDENT_START_ISO8601>"
    state, site = State(cfg.state_dir), policy_set.site
    targets = [_target(cfg, state, policy_set, t, i, before)
               for i, t in enumerate(incident.restore_order(policy_set), 1)]
    terminal = time_to_service.terminal(state, policy_set, {t["name"]: t["projection"] for t in targets})
    return {"generated": iso(now), "host": cfg.host, "site": site.name, "port": site.port,
            "incident": open_incident["id"] if open_incident else None, "before": before,
            "mandate": {"ja": MANDATE_JA, "en": MANDATE_EN},
            "steps": [{"ja": ja, "en": en, "command": cmd} for ja, en, cmd in STEPS], "targets": targets,
            "terminal": terminal,
            "checklist": [{"en": item, "ja": CHECKLIST_JA.get(item, item)} for item in incident.CHECKLIST]}


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
    return f"{_seconds(p['projected_ready_seconds'])} / RTO {t['rto'] or '-'} ({p['projection_basis']}; {error})"


def terminal_label(doc: dict) -> str:
    """The whole terminal's projected time to service (time_to_service.describe), Japanese / English."""
    term = doc["terminal"]
    ja = f"全体の業務再開見込み {_seconds(term['seconds'])}"
    if term["allowable_downtime_seconds"]:
        ja += f"（許容停止時間 {_seconds(term['allowable_downtime_seconds'])} の {term['share']:.0%}）"
    return f"{ja} / {time_to_service.describe(term)}"


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


def write(cfg: Config, policy_set, out_dir: Path) -> dict:
    """Write runbook.md and runbook.html into out_dir, record their hashes; returns the runbook dict."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out_dir}: {exc.strerror}") from None
    doc = build(cfg, policy_set)
    files = {"runbook.md": to_markdown(doc).encode("utf-8"), "runbook.html": to_html(doc)}
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    hashes = {name: sha256(data) for name, data in files.items()}
    rec = evidence.record(cfg, "runbook", {
        "files": hashes, "site": doc["site"], "before": doc["before"], "targets": [
            {"name": t["name"], "order": t["order"], "expected_seconds": t["expected"]["seconds"],
             "basis": t["expected"]["basis"],
             "projected_seconds": t["projection"]["projected_ready_seconds"]} for t in doc["targets"]],
        "terminal": {k: doc["terminal"][k] for k in ("seconds", "allowable_downtime_seconds", "missing", "rule")}})
    return {**doc, "out": str(out_dir), "files": {n: str(out_dir / n) for n in files}, "sha256": hashes,
            "record_seq": rec["seq"]}
