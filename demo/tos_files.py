"""Deterministic TOS file trees: programs (prod/dev/eval), server and network logs, control configs, docs, exports.

`generate_tree(root)` writes the tree and returns `{relative_path: sha256}`; `advance_day(root, day)` applies one
day of realistic change: logs grow by appending only (rotated when large), a few configs are touched, the export is
refreshed. IP addresses in network logs come from the documentation ranges (RFC 5737) and are never contacted.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from datetime import datetime, timedelta
from pathlib import Path

from demo.tos_data import BASE, HISTORY_DAYS, container_number

ENVIRONMENTS = {"production": "4.2.1", "development": "4.3.0-dev7", "evaluation": "4.3.0-rc1"}
LOGS = ("logs/server/app.log", "logs/server/gate.log", "logs/network/vpn-router.log", "logs/network/firewall.log")
ROTATE_BYTES = 2_000_000
KEEP_ROTATED = 5
DOC_NETS = ("192.0.2.", "198.51.100.", "203.0.113.")
CRANES = [f"qc{n:02d}" for n in range(1, 7)] + [f"rtg{n:02d}" for n in range(1, 13)]
_APP_MESSAGES = ("yard move planned", "vessel plan saved", "berth schedule sync", "EDI COPRAR processed",
                 "crane job dispatched")
SCRIPT = """#!/bin/sh
# TOS server launcher ({env})
case "$1" in
  --version) echo "tos-server {version} ({env})"; exit 0 ;;
esac
echo "tos-server {version}: starting ({env})" >&2
exit 0
"""


def _day_start(day: int) -> datetime:
    return BASE + timedelta(days=HISTORY_DAYS + day)


def _write(root: Path, rel: str, data: bytes | str, mtime: datetime, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))


def _append(root: Path, rel: str, text: str, mtime: datetime) -> None:
    with open(root / rel, "a") as fh:
        fh.write(text)
    os.utime(root / rel, (mtime.timestamp(), mtime.timestamp()))


def tree_hashes(root: Path) -> dict[str, str]:
    """`{relative_path: sha256}` of every regular file under `root`."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def generate_tree(root: Path, seed: int = 7, scale: float = 1.0) -> dict[str, str]:
    """Write the TOS file tree under `root` (about 25 MB at scale 1.0); return `{relative_path: sha256}`."""
    root = Path(root)
    rng = random.Random(seed)
    stamp = _day_start(0)
    for env, version in ENVIRONMENTS.items():
        _programs(root, rng, env, version, scale, stamp)
    _logs(root, rng, scale)
    _control(root, rng, stamp)
    _docs(root, stamp)
    _export(root, rng, int(5000 * scale), stamp)
    return tree_hashes(root)


def _programs(root: Path, rng: random.Random, env: str, version: str, scale: float, stamp: datetime) -> None:
    base = f"programs/{env}"
    _write(root, f"{base}/bin/tos-server", SCRIPT.format(env=env, version=version), stamp, 0o755)
    for name, size in (("lib/libtos-core.so.4", 3_000_000), ("lib/libyard-planner.so.2", 1_200_000),
                       ("lib/libgate-ocr.so.1", 800_000), ("bin/tos-gate", 600_000)):
        _write(root, f"{base}/{name}", b"\x7fELF" + rng.randbytes(max(64, int(size * scale))), stamp, 0o755)
    _write(root, f"{base}/etc/tos.ini", _tos_ini(env, version, rng.randint(1, 99)), stamp)
    _write(root, f"{base}/etc/logging.conf", "[logger_root]\nlevel=INFO\nhandlers=file\n", stamp)
    _write(root, f"{base}/share/schema-version.txt", f"{version}\n", stamp)


def _tos_ini(env: str, version: str, rev: int) -> str:
    return (f"[server]\nversion = {version}\nenvironment = {env}\nconfig_revision = {rev}\n"
            f"listen = 127.0.0.1:7400\n\n[database]\nhost = /var/run/postgresql\ndbname = tos\n"
            f"user = tos_app\n\n[yard]\nblocks = 32\nmax_tier = 5\n")


def _log_lines(rng: random.Random, rel: str, start: datetime, count: int, span_hours: float) -> str:
    step = 0.9 * span_hours * 3600 / max(count, 1)  # 10 % slack keeps files in time order
    t, out = start, []
    for i in range(count):
        t += timedelta(seconds=rng.uniform(0.2, 1.8) * step)
        out.append(f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')} {_log_message(rng, rel, i)}\n")
    return "".join(out)


def _log_message(rng: random.Random, rel: str, i: int) -> str:
    ip = f"{rng.choice(DOC_NETS)}{rng.randint(1, 254)}"
    name = Path(rel).name
    if name == "vpn-router.log":
        user = rng.choice(("vendor-maint", "ops-remote", "tos-dev", "unknown"))
        state = rng.choice(("connected", "disconnected", "auth-failed"))
        return f"vpn-gw01 ike[812]: peer {ip}:500 user={user} {state}"
    if name == "firewall.log":
        act = rng.choice(("ACCEPT", "ACCEPT", "DROP"))
        return (f"fw01 kernel: {act} proto=TCP src={ip} spt={rng.randint(1024, 65535)} "
                f"dst=10.20.0.{rng.randint(2, 40)} dpt={rng.choice((22, 443, 3389, 5432, 7400))}")
    if name == "gate.log":
        cid = rng.randint(1, 100_000)
        return f"tos-gate01 tos-gate[2201]: INFO lane={rng.randint(1, 12)} container={container_number(cid)} " \
               f"{rng.choice(('gate-in', 'gate-out'))} ocr_conf={rng.randint(80, 99)}"
    lvl = rng.choices(("INFO", "WARN", "ERROR"), (90, 8, 2))[0]
    return f"tos-app01 tos-server[1840]: {lvl} seq={i} {rng.choice(_APP_MESSAGES)}"


def _logs(root: Path, rng: random.Random, scale: float) -> None:
    lines = max(50, int(8000 * scale))
    for rel in LOGS:
        for k in range(3, -1, -1):
            start = _day_start(-(k + 1) * 7)
            name = rel if k == 0 else f"{rel}.{k}"
            text = _log_lines(rng, rel, start, lines, 7 * 24)
            end = start + timedelta(days=7)
            _write(root, name, text, end, 0o640)


def _control(root: Path, rng: random.Random, stamp: datetime) -> None:
    for crane in CRANES:
        firmware = f"2.{rng.randint(0, 9)}.{rng.randint(0, 30)}"
        cfg = {"crane": crane, "plc": {"vendor": "ExamplePLC", "firmware": firmware,
                                       "program_crc": f"{rng.getrandbits(32):08x}"},
               "limits": {"max_load_t": 65 if crane.startswith("qc") else 40, "hoist_speed_mpm": rng.randint(60, 90)},
               "last_calibration": stamp.date().isoformat()}
        _write(root, f"control/cranes/{crane}.plc.json", json.dumps(cfg, indent=2) + "\n", stamp)
    roles = "[roles]\noperator = yard.view, yard.move\nplanner = vessel.plan, yard.plan\n" \
            "vendor_maint = system.maintain\nbackup = backup.run\nauditor = evidence.read\n"
    _write(root, "control/roles.ini", roles, stamp, 0o640)
    _write(root, "control/plc-logic/qc-interlock.st", "(* crane interlock, structured text *)\n"
           "IF spreader_locked AND NOT gantry_moving THEN hoist_enable := TRUE; END_IF;\n", stamp)


def _docs(root: Path, stamp: datetime) -> None:
    diagram = ("TOS network (text diagram)\n\n[vendor VPN]--(vpn-gw01)--[fw01]--+--[tos-app01] TOS server\n"
               "                                    +--[tos-db01] PostgreSQL\n"
               "                                    +--[tos-gate01] gate OCR\n"
               "                                    +--[crane LAN] qc01-qc06, rtg01-rtg12\n"
               "backup: backupd on tos-app01 -> isolated object store (Object Lock)\n")
    _write(root, "docs/network-diagram.txt", diagram, stamp)
    notes = ("# TOS recovery notes\n\n1. Isolate infected hosts; preserve disks for investigation.\n"
             "2. Restore the TOS database from the last clean generation (backupd restore --before).\n"
             "3. Reconcile yard inventory against a physical check before reopening gates.\n")
    _write(root, "docs/recovery-notes.md", notes, stamp)


def _export(root: Path, rng: random.Random, rows: int, stamp: datetime) -> None:
    lines = ["container_number,size_type,owner,status"]
    for cid in range(1, rows + 1):
        lines.append(f"{container_number(cid)},{rng.choice(('22G1', '45G1', '42G1', '22R1'))},"
                     f"{container_number(cid)[:3]},{rng.choice(('IN_YARD', 'ON_VESSEL', 'GATED_OUT'))}")
    _write(root, "exports/containers-master.csv", "\n".join(lines) + "\n", stamp)


UPDATE_EVERY_DAYS = 7  # a program release in the evaluation, then the development environment


def advance_day(root: Path, day: int, seed: int = 7) -> dict[str, str]:
    """Day `day` (1, 2, ...): append to every log (rotating big ones), touch a few configs, a program
    release every UPDATE_EVERY_DAYS; return new hashes."""
    root = Path(root)
    rng = random.Random(seed * 1_000_003 + day)
    start = _day_start(day - 1)
    for rel in LOGS:
        _rotate_if_big(root, rel)
        _append(root, rel, _log_lines(rng, rel, start, rng.randint(300, 900), 24), start + timedelta(days=1))
    for crane in rng.sample(CRANES, 2):
        _touch_crane(root, crane, rng, start + timedelta(hours=rng.uniform(8, 18)))
    if rng.random() < 0.5:
        _write(root, "programs/development/etc/tos.ini", _tos_ini("development", ENVIRONMENTS["development"],
               100 + day), start + timedelta(hours=10))
    _export(root, rng, 5000 + 20 * day, start + timedelta(hours=23))
    if day % UPDATE_EVERY_DAYS == 0:
        _update_programs(root, rng, "evaluation" if day % (2 * UPDATE_EVERY_DAYS) else "development", day,
                         start + timedelta(hours=14))
    return tree_hashes(root)


def _code_bytes(rng: random.Random, size: int) -> bytes:
    """Bytes with the entropy of compiled code (about 6 bits per byte), not of encrypted data."""
    alphabet = bytes(rng.sample(range(256), 64))
    return b"\x7fELF" + bytes(rng.choice(alphabet) for _ in range(size))


def _update_programs(root: Path, rng: random.Random, env: str, day: int, when: datetime) -> None:
    """A vendor release: new binaries and a version bump in one environment."""
    base = f"programs/{env}"
    for rel in ("lib/libyard-planner.so.2", "lib/libgate-ocr.so.1", "bin/tos-gate"):
        size = max(64, (root / base / rel).stat().st_size - 4)
        _write(root, f"{base}/{rel}", _code_bytes(rng, min(size, 200_000)), when, 0o755)
    _write(root, f"{base}/share/schema-version.txt", f"4.{day}.0\n", when)


def _touch_crane(root: Path, crane: str, rng: random.Random, when: datetime) -> None:
    path = root / f"control/cranes/{crane}.plc.json"
    cfg = json.loads(path.read_text())
    cfg["last_calibration"] = when.date().isoformat()
    cfg["limits"]["hoist_speed_mpm"] = rng.randint(60, 90)
    _write(root, str(path.relative_to(root)), json.dumps(cfg, indent=2) + "\n", when)


def _rotate_if_big(root: Path, rel: str) -> None:
    """logrotate-style: rel.N -> rel.N+1 (oldest dropped), rel -> rel.1, new empty rel. Content never edited."""
    if (root / rel).stat().st_size < ROTATE_BYTES:
        return
    (root / f"{rel}.{KEEP_ROTATED}").unlink(missing_ok=True)
    for k in range(KEEP_ROTATED - 1, 0, -1):
        if (root / f"{rel}.{k}").exists():
            os.rename(root / f"{rel}.{k}", root / f"{rel}.{k + 1}")
    os.rename(root / rel, root / f"{rel}.1")
    (root / rel).touch(mode=0o640)
