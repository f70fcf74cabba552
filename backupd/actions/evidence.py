"""`backupd evidence verify | export | pull | sync`: orchestration over backupd.evidence.

Each function returns a plain dict for the command layer to print; `ok` False means a finding.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from backupd import evidence
from backupd.actions import evidence_conformance, evidence_html, evidence_report, evidence_verify
from backupd.actions.common import read_credentials
from backupd.actions.snapshot_choice import parse_when
from botocore.exceptions import BotoCoreError, ClientError

from backupd.errors import ConfigError, DependencyError
from backupd.evidence import bundle, keys, mirror, record_format, settings
from backupd.evidence import keyring as keyring_mod
from backupd.evidence.canonical import iso, sha256
from backupd.evidence.ledger import Ledger, split_lines
from backupd.evidence.verify import verify_lines


def verify(path: Path, public_key: Path | None = None) -> dict:
    """Verify an export bundle or a raw ledger file offline (see evidence_verify for keyrings and the mirror)."""
    return evidence_verify.verify(path, [public_key] if public_key else [])


def verify_against_mirror(cfg, policy_set, path: Path, destination: str, host: str | None,
                          credentials: Path | None, public_keys: list, keyring: Path | None,
                          all_signatures: bool = False) -> dict:
    """Verify a raw ledger and compare it with the host's records and checkpoints in the WORM mirror."""
    import tempfile

    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if bundle.is_bundle(path):
        raise ConfigError(f"{path}: --mirror compares a raw ledger (ledger.jsonl); verify bundles without it")
    host = host or _ledger_host(path)
    with tempfile.TemporaryDirectory(prefix="backupd-mirror-") as tmp:
        [got] = pull_hosts(cfg, policy_set, destination, Path(tmp), host, credentials)
        doc = evidence_verify.verify(path, public_keys, keyring, mirror_copy=got, all_signatures=all_signatures)
    doc["mirror"] = {"destination": destination, "host": host, "records": got.records,
                     "checkpoints": len(got.checkpoints),
                     "last_checkpoint": max((c["seq"] for c in got.checkpoints), default=None)}
    return doc


def _ledger_host(path: Path) -> str:
    with open(path, "rb") as handle:
        first = handle.readline().rstrip(b"\n")
    try:
        return record_format.parse(first)["host"]
    except ValueError:
        raise ConfigError(f"{path}: cannot tell the host from its first record; pass --host") from None


def _slice(lines: list[bytes], since: str, until: str) -> tuple[list[bytes], str]:
    """The contiguous records whose time is in [since, until], and the hash they chain to."""
    times = []
    for line in lines:
        try:
            times.append(record_format.parse(line)["time"])
        except ValueError:
            times.append(None)  # damaged: kept inside the slice so verify names it
    inside = [i for i, t in enumerate(times) if t is None or since <= t <= until]
    if not inside:
        return [], record_format.GENESIS
    first, last = inside[0], inside[-1]
    prev = record_format.line_hash(lines[first - 1]) if first else record_format.GENESIS
    return lines[first:last + 1], prev


def _when(text: str, option: str) -> datetime:
    try:
        return parse_when(text)
    except ConfigError:
        raise ConfigError(f"{option} {text!r}: expected an ISO 8601 time such as 2026-11-20T06:30:00Z") from None


def export(cfg, policy_set, out: Path, since: str | None = None, until: str | None = None,
           keyring: Path | None = None) -> dict:
    """Write one bundle with the records of the period, the public key and the reports; record it.

    With a keyring (--keyring, else evidence.keyring) the report names the role that signed each
    drill and audit and judges separation of duties."""
    now = datetime.now(timezone.utc)
    since_s = iso(_when(since, "--since") if since else now - settings.of(cfg).audit_period)
    until_s = iso(_when(until, "--until") if until else now)
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out}: is a directory; give a file name such as evidence.tar.gz")
    key = keys.load_or_create(cfg.state_dir)
    ledger = Ledger(cfg.state_dir)
    all_lines = ledger.lines()
    keyring = keyring or settings.of(cfg).keyring
    ring = keyring_mod.load(keyring) if keyring else None
    whole = verify_lines(all_lines, [key.public_key()], keyring=ring)
    lines, first_prev = _slice(all_lines, since_s, until_s)
    records = [record_format.parse(l) for l in lines if _parses(l)]
    report = evidence_report.build(cfg, policy_set, records, now, cfg.host,
                                   evidence_report.inventory(cfg, policy_set, cfg.backup_hosts()))
    fp = keys.fingerprint(key.public_key())
    report["period"] = {"since": since_s, "until": until_s}
    report["ledger"] = {"records": len(lines), "first_seq": records[0]["seq"] if records else None,
                        "last_seq": records[-1]["seq"] if records else None, "key_fingerprint": fp,
                        "chain_ok": whole.ok, "problems": [str(p) for p in whole.problems]}
    mirrored = bool(settings.of(cfg).mirror) and not ledger.index.unmirrored()
    _attest(report, records, whole, ring)
    report["conformance"] = evidence_conformance.evaluate(report, records, now, mirrored)
    files = {bundle.LEDGER: b"".join(l + b"\n" for l in lines),
             bundle.PUBLIC_KEY: keys.public_pem(key.public_key()),
             "report.json": json.dumps(report, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8"),
             "report.csv": evidence_report.to_csv(report), "report.html": evidence_html.render(report)}
    meta = {"host": cfg.host, "created": iso(now), "since": since_s, "until": until_s, "key_fingerprint": fp,
            "first_seq": report["ledger"]["first_seq"], "last_seq": report["ledger"]["last_seq"],
            "first_prev": first_prev, "records": len(lines)}
    bundle.write(out, files, meta, key)
    digest = sha256(out.read_bytes())
    rec = evidence.record(cfg, "evidence-export", {"file": out.name, "sha256": digest, "since": since_s,
                                                   "until": until_s, "first_seq": meta["first_seq"],
                                                   "last_seq": meta["last_seq"]})
    return {"ok": whole.ok, "out": str(out), "sha256": digest, "records": len(lines),
            "first_seq": meta["first_seq"], "last_seq": meta["last_seq"], "since": since_s, "until": until_s,
            "key_fingerprint": fp, "export_record_seq": rec["seq"], "ledger_problems": report["ledger"]["problems"],
            "conformance": {i["id"]: i["status"] for i in report["conformance"]}}


def _attest(report: dict, records: list[dict], whole, ring) -> None:
    """Who signed each drill and audit of the period (report["attestations"], drills' attested_by)."""
    seqs = {r["seq"] for r in records}
    found = [a for a in whole.attestations if a["seq"] in seqs]
    by_seq = {a["seq"]: a for a in found}
    for target in report["targets"]:
        for drill in target["drills"]:
            got = by_seq.get(drill["seq"])
            drill["attested_by"] = got["role"] if got else None
    report["attestations"] = found
    report["keyring"] = None if ring is None else {
        "file": ring.path, "roles": {n: {"kinds": sorted(r.kinds) if r.kinds is not None else ["*"],
                                         "verifier": r.verifier, "keys": r.kids} for n, r in ring.roles.items()}}


def _parses(line: bytes) -> bool:
    try:
        record_format.parse(line)
        return True
    except ValueError:
        return False


def pull(cfg, policy_set, destination: str, out_dir: Path, host: str | None = None,
         credentials: Path | None = None, keyring: Path | None = None) -> dict:
    """Rebuild ledgers from the WORM mirror with read-only (auditor) credentials, then verify each
    against the host's first key (and rotations), the keyring and the signed checkpoints."""
    pulled = pull_hosts(cfg, policy_set, destination, out_dir, host, credentials)
    hosts = []
    for got in pulled:
        check = None
        if got.ledger and got.public_key:
            check = evidence_verify.verify(got.ledger, [got.public_key], keyring, checkpoints=got.checkpoints)
        problems = got.problems + (check["problems"] if check else ["no records or no public key in the mirror"])
        hosts.append({"host": got.host, "records": got.records, "ledger": str(got.ledger) if got.ledger else None,
                      "public_key": str(got.public_key) if got.public_key else None,
                      "key_fingerprint": check["key_fingerprint"] if check else None,
                      "checkpoints": len(got.checkpoints),
                      "last_checkpoint": max((c["seq"] for c in got.checkpoints), default=None),
                      "attestations": check["attestations"] if check else [],
                      "ok": not problems, "problems": problems})
    return {"ok": bool(hosts) and all(h["ok"] for h in hosts), "bucket": pulled_bucket(policy_set, destination),
            "out": str(out_dir), "hosts": hosts}


def pulled_bucket(policy_set, destination: str) -> str:
    return policy_set.destinations[destination].bucket


def pull_hosts(cfg, policy_set, destination: str, out_dir: Path, host: str | None = None,
               credentials: Path | None = None) -> list:
    """mirror.pull with the auditor credentials; ConfigError/DependencyError as the CLI expects."""
    dests = policy_set.destinations
    if destination not in dests:
        raise ConfigError(f"no destination {destination!r}; known: {', '.join(sorted(dests))}")
    dest = dests[destination]
    creds = read_credentials(credentials or cfg.secrets_dir / "s3-auditor.env")
    try:
        return mirror.pull(mirror.client(dest, creds), dest.bucket, out_dir, host)
    except (BotoCoreError, ClientError) as exc:
        raise DependencyError(f"cannot read s3://{dest.bucket}/{mirror.PREFIX}: {exc.__class__.__name__}") from None


def sync(cfg) -> dict:
    """Push pending records (and a signed checkpoint when due) to the WORM mirror now (the daemon and every
    record() also do this). LedgerRegression when the ledger lost records or the mirror refuses one."""
    opts = settings.of(cfg)
    name = opts.mirror
    if not name:
        raise ConfigError("evidence.mirror is not set in backupd.yaml")
    dest = mirror.destination(cfg, name)
    creds = read_credentials(mirror.credentials_of(cfg, opts, dest))
    try:
        s3 = mirror.client(dest, creds)
        pushed = mirror.push_pending(cfg.state_dir, dest, s3)
        mirror.checkpoint_if_due(cfg.state_dir, dest, s3, keys.load_or_create(cfg.state_dir),
                                 opts.checkpoint_period)
    except (BotoCoreError, ClientError) as exc:
        raise DependencyError(f"cannot write to s3://{dest.bucket}/{mirror.PREFIX}: {exc.__class__.__name__}") from None
    pending = len(Ledger(cfg.state_dir).index.unmirrored())
    return {"ok": pending == 0, "destination": name, "pushed": pushed, "pending": pending}
