"""`backupd runbook`: the system recovery procedure (Markdown + self-contained HTML, Japanese and English;
render/runbook.py writes both from the document built here).

Generated from the policies (restore order, owners, destinations, RTO) and the drill history in state
(expected duration = last full drill's time to service-ready, else a sample drill's projection). The
guideline (M4, 1.8.2) requires this procedure to be shared in advance with the TOS vendors.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from pathlib import Path

from backupd import evidence
from backupd.actions import incident, time_to_service
from backupd.config.loader import Config
from backupd.errors import ConfigError
from backupd.evidence.canonical import iso, sha256
from backupd.policy.durations import format_duration
from backupd.render.runbook import human_seconds, to_html, to_markdown
from backupd.state.runs import State

MANDATE_JA = ("港湾ガイドライン（セキュリティ責任者編 1.8.2）は、TOSの保守・開発ベンダーと事前に共有した"
              "システム復旧手順を必須としています。本書はその手順書です。インシデントの前にベンダーと共有し、"
              "BCP訓練で使用してください。")
MANDATE_EN = ("The port-sector guideline (security manager edition 1.8.2) makes a system recovery procedure "
              "shared in advance with the TOS maintenance/development vendors mandatory. This is that procedure: "
              "share it with the vendors before an incident and use it in BCP training.")
NOT_MEASURED = ("未計測 — 復旧訓練を実施してください", "not measured — run a drill")
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
                "ja": f"{human_seconds(secs)}（{when} のフル復旧訓練で実測）",
                "en": f"{human_seconds(secs)} (measured by the full drill of {when})"}
    return {"seconds": secs, "basis": "projected", "drill_time": when,
            "ja": f"{human_seconds(secs)}（{when} のサンプル訓練からの推定）",
            "en": f"{human_seconds(secs)} (projected from the sample drill of {when})"}


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
