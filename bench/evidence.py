"""Evidence ledger verify and export throughput on a generated ledger of N signed records.

    python -m bench.evidence [--records 1000000] [--checkpoint-every 1000] [--workdir DIR] [--json]
                             [--skip-all-signatures]

Generates (once; reused while DIR/evidence.json matches N and K) a state directory whose ledger holds
N records built and signed by the real code path (record_format.build, Ed25519): a mix of backup,
forget, check, drill, storage_audit, keys_escrow and evidence-export records one minute apart, one
key-rotation record in the middle (the real rotation data and proof; the second half is signed by the
new key), a signed checkpoint (checkpoint.build) every K records in DIR/checkpoints.jsonl as the WORM
mirror would hold them, and the SQLite index a host keeps. Then times, in this process:

- `evidence verify` (default): evidence_verify.verify(ledger, [first key], checkpoints=...);
- `evidence verify --all-signatures`: the same with every record's signature checked (all cores);
- `evidence export`: actions.evidence.export of the whole ledger (inventory stubbed: no restic), then
  the ledger and its index are cut back to N records so the data set stays reusable.

Prints seconds and records/s for each, judged against verify >= 100,000 records/s and export < 10 s.
Exit codes: 0 measured (whatever the figures), 1 a verify or export found a problem, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.evidence import canonical, checkpoint, keys, record_format
from backupd.evidence.index import Index

HOST = "bench-host"
TARGETS = ("tos-db", "tos-prog", "logs-srv", "logs-net")
#: (kind, share of the records): what a host's ledger holds (backups of several targets a day, etc.).
MIX = (("backup", 55), ("forget", 20), ("check", 12), ("drill", 5), ("storage_audit", 5), ("keys_escrow", 2),
       ("evidence-export", 1))
VERIFY_TARGET, EXPORT_TARGET = 100_000.0, 10.0
POLICY = """version: 1
site: {{name: Benchmark Terminal, port: other}}
destinations:
  worm:
    kind: s3
    endpoint: http://127.0.0.1:9
    bucket: bench
    object_lock: true
    credentials_file: s3-writer.env
    password_file: restic-password
targets:
{targets}"""
TARGET = """  - name: {name}
    category: {category}
    owner: bench
    sources: {{paths: ['/srv/{name}']}}
    frequency: 1d
    retention: {{keep_daily: 14, keep_weekly: 8}}
    destinations: [worm]
"""


def _kinds() -> list[str]:
    out = []
    for kind, share in MIX:
        out += [kind] * share
    return out


def _data(kind: str, i: int) -> dict:
    target = TARGETS[i % len(TARGETS)]
    if kind == "backup":
        return {"target": target, "destination": "worm", "status": "ok", "snapshot_id": f"{i:064x}",
                "files": 8000 + i % 500, "bytes": 1_000_000 + i, "duration_s": "12.5"}
    if kind == "drill":
        return {"target": target, "destination": "worm", "status": "ok", "verdict": "PASS",
                "snapshot_id": f"{i:064x}", "probes": 3}
    return {"target": target, "destination": "worm", "status": "ok", "detail": f"run {i}"}


def generate(workdir: Path, n: int, every: int) -> dict:
    """The state directory of a host with n records (reused when the stamp matches)."""
    stamp = workdir / "evidence.json"
    want = {"records": n, "checkpoint_every": every, "version": 1}
    if stamp.is_file() and json.loads(stamp.read_text()).get("want") == want:
        return json.loads(stamp.read_text())
    for sub in ("state", "checkpoints.jsonl", "first.pub"):
        _remove(workdir / sub)
    kdir, edir = workdir / "state" / "keys", workdir / "state" / "evidence"
    (workdir / "state").mkdir(mode=0o700)
    kdir.mkdir(mode=0o700)
    edir.mkdir(mode=0o700)
    first = key = Ed25519PrivateKey.generate()
    (workdir / "first.pub").write_bytes(keys.public_pem(first.public_key()))
    kinds, prev = _kinds(), record_format.GENESIS
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    began = time.perf_counter()
    with open(edir / "ledger.jsonl", "wb") as out, open(workdir / "checkpoints.jsonl", "wb") as cps:
        for seq in range(1, n + 1):
            when = canonical.iso(start + timedelta(minutes=seq))
            kind = kinds[seq % len(kinds)]
            if seq == n // 2:
                line, new = _rotation(seq, prev, when, key)
            else:
                line, new = record_format.build(seq, prev, HOST, kind, _data(kind, seq), key, when), key
            out.write(line + b"\n")
            prev, key = record_format.line_hash(line), new
            if seq % every == 0 or seq == n:
                cps.write(checkpoint.build(HOST, seq, prev, key, when) + b"\n")
    keys.write_private(kdir / keys.KEY_NAME, key)
    (kdir / keys.PUB_NAME).write_bytes(keys.public_pem(key.public_key()))
    generated = time.perf_counter() - began
    index = Index(edir / "index.sqlite")
    index.catch_up(edir / "ledger.jsonl")
    index.close()
    doc = {"want": want, "generate_seconds": round(generated, 1), "bytes": (edir / "ledger.jsonl").stat().st_size}
    stamp.write_text(json.dumps(doc))
    return doc


def _rotation(seq: int, prev: str, when: str, old) -> tuple[bytes, Ed25519PrivateKey]:
    """A key-rotation record as rotation.rotate writes it, and its new key."""
    new = Ed25519PrivateKey.generate()
    old_kid, new_kid = keys.fingerprint(old.public_key()), keys.fingerprint(new.public_key())
    proof = new.sign(record_format.rotation_statement(seq, prev, HOST, when, old_kid, new_kid))
    data = {"old_kid": old_kid, "new_kid": new_kid, "reason": "bench",
            "old_public_key": keys.public_pem(old.public_key()).decode("ascii"),
            "new_public_key": keys.public_pem(new.public_key()).decode("ascii"),
            "new_key_signature": base64.b64encode(proof).decode("ascii")}
    return record_format.build(seq, prev, HOST, record_format.ROTATION, data, old, when), new


def _remove(path: Path) -> None:
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _config(workdir: Path) -> Path:
    secrets = workdir / "secrets"
    secrets.mkdir(exist_ok=True, mode=0o700)
    for name in ("s3-writer.env", "restic-password"):
        (secrets / name).write_text("AWS_ACCESS_KEY_ID=x\nAWS_SECRET_ACCESS_KEY=y\n")
        (secrets / name).chmod(0o600)
    categories = ("container_data", "system_program", "logs", "logs")
    extra = {"tos-prog": "    environment: production\n", "logs-srv": "    source: server\n",
             "logs-net": "    source: network_device\n"}
    targets = "".join(TARGET.format(name=t, category=c).replace("    owner:", extra.get(t, "") + "    owner:")
                      for t, c in zip(TARGETS, categories))
    (workdir / "policy.yaml").write_text(POLICY.format(targets=targets))
    config = workdir / "backupd.yaml"
    config.write_text(f"policies: ['{workdir}/policy.yaml']\nstate_dir: '{workdir}/state'\n"
                      f"secrets_dir: '{secrets}'\nhost: {HOST}\n")
    return config


def _timed(fn):
    """(result, wall seconds, CPU seconds of this process and its reaped children: the pool's workers)."""
    began, cpu = time.perf_counter(), _cpu()
    result = fn()
    return result, time.perf_counter() - began, _cpu() - cpu


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(workdir: Path, n: int, every: int, all_signatures: bool = True) -> dict:
    from backupd.actions import evidence, evidence_report, evidence_verify
    from backupd.commands.common import load_config, load_policies

    gen = generate(workdir, n, every)
    ledger = workdir / "state" / "evidence" / "ledger.jsonl"
    cps = [checkpoint.parse(line) for line in (workdir / "checkpoints.jsonl").read_bytes().splitlines()]
    pins = [workdir / "first.pub"]
    out = {"records": n, "checkpoints": len(cps), "ledger_bytes": gen["bytes"], "cores": os.cpu_count(),
           "generate_seconds": gen["generate_seconds"]}
    out["load_average"] = round(os.getloadavg()[0], 2)
    doc, secs, cpu = _timed(lambda: evidence_verify.verify(ledger, pins, checkpoints=cps))
    out["verify"] = _rate(doc, secs, cpu, n)
    if all_signatures:  # minutes: one Ed25519 check per record
        doc, secs, cpu = _timed(lambda: evidence_verify.verify(ledger, pins, checkpoints=cps, all_signatures=True))
        out["verify_all_signatures"] = _rate(doc, secs, cpu, n)
    cfg = load_config(_config(workdir))
    policy_set = load_policies(cfg)
    evidence_report.inventory = lambda cfg, ps, host: {(t.name, d): {"snapshots": [], "error": None}
                                                      for t in ps.targets for d in t.destinations}
    size = ledger.stat().st_size
    try:
        with tempfile.TemporaryDirectory(prefix="backupd-bench-export-") as tmp:
            bundle = Path(tmp) / "evidence.tar.gz"
            doc, secs, cpu = _timed(lambda: evidence.export(cfg, policy_set, bundle, since="2025-01-01T00:00:00Z",
                                                            until="2100-01-01T00:00:00Z"))
            out["export"] = {"ok": doc["ok"], "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
                             "records_per_s": round(n / secs), "bundle_bytes": bundle.stat().st_size,
                             "records": doc["records"]}
    finally:
        _cut_back(ledger, size, n)
    return out


def _rate(doc: dict, secs: float, cpu: float, n: int) -> dict:
    return {"ok": doc["ok"], "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2), "records_per_s": round(n / secs),
            "signatures_checked": doc["ledger"]["signatures_checked"], "problems": doc["problems"][:3]}


def _cut_back(ledger: Path, size: int, n: int) -> None:
    """Remove the evidence-export record the export appended (ledger bytes and index row)."""
    with open(ledger, "r+b") as handle:
        handle.truncate(size)
    db = sqlite3.connect(ledger.parent / "index.sqlite")
    with db:
        db.execute("DELETE FROM records WHERE seq > ?", (n,))
    db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "backupd-bench-evidence")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-all-signatures", action="store_true", help="Do not time verify --all-signatures.")
    args = parser.parse_args(argv)
    if args.records < 4 or args.checkpoint_every < 1:
        parser.error("--records must be >= 4 and --checkpoint-every >= 1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    got = run(args.workdir.resolve(), args.records, args.checkpoint_every, not args.skip_all_signatures)
    if args.json:
        print(json.dumps(got, indent=1))
    else:
        print(f"ledger: {got['records']:,} records, {got['ledger_bytes'] / 1e6:.0f} MB, {got['checkpoints']} signed "
              f"checkpoints, {got['cores']} cores, load average {got['load_average']} (generated in "
              f"{got['generate_seconds']} s)")
        for name, label in (("verify", "evidence verify"), ("verify_all_signatures", "verify --all-signatures"),
                            ("export", "evidence export")):
            if name not in got:
                continue
            r = got[name]
            extra = f", {r['signatures_checked']:,} signatures" if "signatures_checked" in r else ""
            print(f"  {label:26} {r['seconds']:8.2f} s  {r['records_per_s']:>10,} records/s  (CPU {r['cpu_seconds']:.2f} s)"
                  f"{extra}{'' if r['ok'] else '  NOT OK'}")
        print(f"targets: verify >= {VERIFY_TARGET:,.0f} records/s: "
              f"{'met' if got['verify']['records_per_s'] >= VERIFY_TARGET else 'MISSED'}; export < {EXPORT_TARGET} s: "
              f"{'met' if got['export']['seconds'] < EXPORT_TARGET else 'MISSED'}")
    return 0 if all(got[k]["ok"] for k in ("verify", "verify_all_signatures", "export") if k in got) else 1


if __name__ == "__main__":
    sys.exit(main())
