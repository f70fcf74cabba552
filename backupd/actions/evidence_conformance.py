"""Guideline conformance items (docs/guideline.md) judged from the report and the records.

Each item: id, title (en, ja), status `met` | `not met` | `not evidenced`, why, and the record seqs that
support it. backupd never claims compliance; it shows what the evidence does and does not support.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from backupd.policy.durations import parse_duration
from backupd.policy.schema import REQUIRED_CATEGORIES

MET, NOT_MET, NONE = "met", "not met", "not evidenced"
SEVERAL_WEEKS = timedelta(weeks=2)
YEAR = timedelta(days=365)


def _item(id_: str, en: str, ja: str, status: str, why: str, seqs=()) -> dict:
    return {"id": id_, "title_en": en, "title_ja": ja, "status": status, "why": why, "seqs": sorted(set(seqs))[-50:]}


def _within(rec_time: str | None, now: datetime, span: timedelta) -> bool:
    if not rec_time:
        return False
    return now - datetime.fromisoformat(rec_time.replace("Z", "+00:00")) <= span


def _m1(targets, now) -> dict:
    late = [t["name"] for t in targets if not (t["backups"]["last_ok"] and _within(
        t["backups"]["last_ok"]["time"], now, 2 * parse_duration(t["frequency"])))]
    seqs = [t["backups"]["last_ok"]["seq"] for t in targets if t["backups"]["last_ok"]]
    if not targets:
        return _item("M1", "Backup targets and frequency", "バックアップ対象と頻度", NONE, "no targets")
    # a category the guideline requires but no target covers is a gap here, never a reason to stop backups
    missing = [c for c in REQUIRED_CATEGORIES if c not in {t["category"] for t in targets}]
    gaps = ([f"no recent successful backup: {', '.join(late)}"] if late else []) + \
        ([f"no target of required category: {', '.join(missing)}"] if missing else [])
    return _item("M1", "Backup targets and frequency", "バックアップ対象と頻度", NOT_MET if gaps else MET,
                 "; ".join(gaps) or "every target backed up within twice its frequency", seqs)


def _m2(targets) -> dict:
    bad = [t["name"] for t in targets if not any(
        d["count"] and (d["object_lock"] or d["offline"]) for d in t["destinations"])]
    return _item("M2", "Backups separated from production", "本番系から分離した保管", MET if not bad else NOT_MET,
                 "each target has snapshots on Object-Lock or offline storage" if not bad
                 else f"no snapshot on isolated storage: {', '.join(bad)}")


def _m3(targets) -> dict:
    logs = [t for t in targets if t["category"] == "logs"]
    sources = {t["source"] for t in logs if t["backups"]["ok"]}
    missing = {"server", "network_device"} - sources
    return _item("M3", "Server and network-device logs kept outside the system",
                 "サーバ・ネットワーク機器ログのシステム外保管", MET if not missing else NOT_MET,
                 "server and network-device logs backed up" if not missing
                 else f"no successful log backup of: {', '.join(sorted(missing))}",
                 [s for t in logs for s in t["backups"]["seqs"]])


def _drills(targets, now) -> tuple[list[str], list[int]]:
    stale = [t["name"] for t in targets if not any(
        d["status"] in ("ok", "pass", "passed") and _within(d["time"], now, YEAR) for d in t["drills"])]
    return stale, [d["seq"] for t in targets for d in t["drills"]]


def _m4(targets, records, now) -> dict:
    """A recovery procedure exists (runbook generated) and is exercised (passing drills)."""
    stale, seqs = _drills(targets, now)
    runbooks = [r["seq"] for r in records if r["kind"] == "runbook"]
    en, ja = "Recovery procedure prepared and exercised (BCP)", "復旧手順の整備と訓練 (BCP)"
    if not seqs and not runbooks:
        return _item("M4", en, ja, NONE, "no drill or runbook records")
    gaps = ([f"no passing drill within a year: {', '.join(stale)}"] if stale or not seqs else []) + \
        ([] if runbooks else ["no recovery runbook generated (backupd runbook)"])
    detail = "; ".join(gaps) if gaps else ("a passing drill within a year for every target; runbook generated "
                                           "(sharing it with the TOS vendors is the operator's step)")
    return _item("M4", en, ja, NOT_MET if gaps else MET, detail, seqs + runbooks)


def _generations(targets) -> dict:
    short = [t["name"] for t in targets if not any(
        d["oldest_age_days"] is not None and d["oldest_age_days"] >= SEVERAL_WEEKS.days for d in t["destinations"])]
    return _item("G1", "Generations reaching back several weeks", "数週間前を含む複数世代",
                 MET if not short else NOT_MET, "oldest restorable point at least 2 weeks old everywhere"
                 if not short else f"history shorter than 2 weeks: {', '.join(short)}")


def _offline(targets, now) -> dict:
    """Offline copies on rotated media: every target with offline.max_age has a read-back-verified rotation
    whose newest generation is younger than max_age."""
    en, ja = "Offline copies on rotated media, read back", "ローテーション外部媒体へのオフライン保管 (読み戻し確認)"
    configured = [t for t in targets if t.get("offline_max_age_seconds")]
    rots = [r for t in configured for r in t.get("offline_rotations", [])]
    seqs = [r["seq"] for r in rots if isinstance(r.get("seq"), int)]
    if not configured:
        return _item("G6", en, ja, NONE, "no target keeps offline copies (offline.max_age on a removable "
                                         "destination)")
    late = [t["name"] for t in configured if not any(
        r["status"] == "ok" and r["read_back"] == "ok" and r.get("newest_time")
        and _within(r["newest_time"], now, timedelta(seconds=t["offline_max_age_seconds"]))
        for r in t.get("offline_rotations", []))]
    if late:
        return _item("G6", en, ja, NOT_MET, f"no read-back-verified rotation within offline.max_age: "
                                            f"{', '.join(late)}", seqs)
    media = sorted({r["medium"] for r in rots if r["status"] == "ok" and r["read_back"] == "ok"})
    return _item("G6", en, ja, MET, f"every offline target has a read-back-verified copy within its max_age "
                                    f"({len(seqs)} rotation(s) on {', '.join(media)})", seqs)


def _kind_item(id_, en, ja, records, kinds, what) -> dict:
    seqs = [r["seq"] for r in records if r["kind"] in kinds]
    return _item(id_, en, ja, MET if seqs else NONE, f"{len(seqs)} {what} record(s)" if seqs
                 else f"no {what} record in this period", seqs)


def _separation(report: dict) -> dict:
    """Drills attested by a separate verifier role (its own key in the keyring), not by the backup host."""
    en, ja = "Separation of duties: drills attested by a verifier role", "職務分離: 検証役による復旧訓練の証明"
    ring = report.get("keyring")
    if not ring:
        return _item("G5", en, ja, NONE, "no keyring given (--keyring / evidence.keyring): who attested the drills "
                                          "cannot be told")
    if not any(r["verifier"] for r in ring["roles"].values()):
        return _item("G5", en, ja, NONE, "the keyring has no verifier role")
    drills = [a for a in report.get("attestations", []) if a["kind"] == "drill"]
    if not drills:
        return _item("G5", en, ja, NONE, "no drill records in this period")
    own = [a for a in drills if not a["verifier"]]
    if own:
        return _item("G5", en, ja, NOT_MET, f"{len(own)} drill record(s) signed by "
                     f"{', '.join(sorted({a['role'] or a['kid'] for a in own}))}, not by a verifier key",
                     [a["seq"] for a in own])
    roles = sorted({a["role"] for a in drills})
    return _item("G5", en, ja, MET, f"{len(drills)} drill record(s), every one signed by {', '.join(roles)}",
                 [a["seq"] for a in drills])


def evaluate(report: dict, records: list[dict], now: datetime, mirrored: bool) -> list[dict]:
    """The conformance items for report.json."""
    targets = report["targets"]
    stale, seqs = _drills(targets, now)
    items = [_m1(targets, now), _m2(targets), _m3(targets), _m4(targets, records, now), _generations(targets),
             _item("G2", "Restore drill at least yearly", "年1回以上の復旧訓練",
                   NONE if not seqs else (MET if not stale else NOT_MET),
                   "see M4" if seqs else "no drill records", seqs),
             _kind_item("G3", "Decryption/signing key backed up", "鍵のバックアップ", records,
                        ("keys_escrow", "key-backup"), "key escrow/backup"),
             _item("G4", "Log tamper protection (signed ledger, WORM mirror)", "ログの改ざん防止",
                   MET if mirrored else NOT_MET, "records are hash-chained, signed and mirrored to Object-Lock "
                   "storage" if mirrored else "records are signed but not mirrored to WORM storage "
                   "(set evidence.mirror)"),
             _separation(report), _offline(targets, now)]
    if report["specific_port"]:
        items += [_item("S1", "Incident procedures with periodic training", "インシデント対応手順と訓練", NONE,
                        "outside backupd; drills are supporting evidence", seqs),
                  _item("S2", "MFA for administrators", "管理者の多要素認証", NONE, "outside backupd"),
                  _kind_item("S3", "Independent audit", "独立した監査", records, ("evidence-export",),
                             "evidence export"),
                  _item("S4", "CISO appointed", "CISOの設置", NONE, "outside backupd")]
    return items
