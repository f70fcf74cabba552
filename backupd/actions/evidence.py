"""`backupd evidence verify | export | pull | sync`: orchestration over backupd.evidence.

Each function returns a plain dict for the command layer to print; `ok` False means a finding.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from backupd import evidence
from backupd.actions import evidence_conformance, evidence_report, evidence_verify
from backupd.actions.snapshot_choice import parse_when
from botocore.exceptions import BotoCoreError, ClientError

from backupd.config.credentials import read_credentials
from backupd.errors import ConfigError, DependencyError
from backupd.evidence import bundle, keys, mirror, period, record_format, settings
from backupd.evidence import keyring as keyring_mod
from backupd.evidence.canonical import iso
from backupd.evidence.ledger import Ledger, LineFile
from backupd.evidence.verify import verify_lines
from backupd.render import evidence_html


def verify(path: Path, public_key: Path | None = None) -> dict:
    """Verify an export bundle or a raw ledger file offline (see evidence_verify for keyrings and the mirror)."""
    return evidence_verify.verify(path, [public_key] if public_key else [])


def verify_against_mirror(cfg, policy_set, path: Path, destination: str, host: str | None,
                          credentials: Path | None, public_keys: list, keyring: Path | None,
                          all_signatures: bool = False) -> dict:
    """Verify a raw ledger or an export bundle and compare it with the host's records and checkpoints in
    the WORM mirror."""
    import tempfile

    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if bundle.is_bundle(path):
        return _verify_bundle_against_mirror(cfg, policy_set, path, destination, host, credentials, public_keys,
                                             keyring, all_signatures)
    host = host or _ledger_host(path)
    with tempfile.TemporaryDirectory(prefix="backupd-mirror-") as tmp:
        [got] = pull_hosts(cfg, policy_set, destination, Path(tmp), host, credentials, public_keys, keyring)
        doc = evidence_verify.verify(path, public_keys, keyring, mirror_copy=got, all_signatures=all_signatures)
    doc["mirror"] = {"destination": destination, "host": host, "records": got.records,
                     "checkpoints": len(got.checkpoints),
                     "last_checkpoint": max((c["seq"] for c in got.checkpoints), default=None),
                     "first_key": got.first_key, "foreign_objects": got.foreign}
    return doc


def _verify_bundle_against_mirror(cfg, policy_set, path: Path, destination: str, host: str | None,
                                  credentials: Path | None, public_keys: list, keyring: Path | None,
                                  all_signatures: bool) -> dict:
    """A bundle's records and checkpoints against its host's mirror, rebuilt by `pull` with the auditor's keys."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="backupd-mirror-") as tmp:
        def pulled(name: str):
            return pull_hosts(cfg, policy_set, destination, Path(tmp), name, credentials, public_keys, keyring)[0]

        doc = evidence_verify.verify(path, public_keys, keyring, all_signatures=all_signatures, host=host,
                                     pull_mirror=pulled)
    doc["mirror"]["destination"] = destination
    return doc


def _mirror_destination(policy_set, destination: str):
    dests = policy_set.destinations
    if destination not in dests:
        raise ConfigError(f"no destination {destination!r}; known: {', '.join(sorted(dests))}")
    return dests[destination]


def _ledger_host(path: Path) -> str:
    with open(path, "rb") as handle:
        first = handle.readline().rstrip(b"\n")
    try:
        return record_format.parse(first)["host"]
    except ValueError:
        raise ConfigError(f"{path}: cannot tell the host from its first record; pass --host") from None


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
    keyring = keyring or settings.of(cfg).keyring
    ring = keyring_mod.load(keyring) if keyring else None
    fp = keys.fingerprint(key.public_key())
    # Three jobs share the cores: a worker process verifies the whole ledger, this process reads the
    # period's records and builds the report (all but the verify's findings) meanwhile, a thread gzips
    # the slice into the bundle (ISA-L drops the GIL); the slice starts at once when the period is the
    # whole ledger, else once its range is known.
    with bundle.Writer(out) as writer, ThreadPoolExecutor(1) as background, \
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as worker:
        checking = worker.submit(_verify_whole, ledger.path, _raw_public(key), keyring)
        writer.add(bundle.PUBLIC_KEY, keys.public_pem(key.public_key()))
        quick = period.whole_file(ledger.path, since_s, until_s)
        if quick:
            streamed = background.submit(writer.add_range, bundle.LEDGER, ledger.path, *quick)
        backups = evidence_report.BackupTally()
        part = period.read(ledger.path, since_s, until_s, evidence_report.RECORD_FIELDS,
                           limit=quick[1] if quick else None,
                           fold={"backup": (evidence_report.DATA_FIELDS, backups.add)})
        if not quick:
            streamed = background.submit(writer.add_range, bundle.LEDGER, ledger.path, part.start, part.size)
        elif quick != (part.start, part.end):
            raise ConfigError(f"{ledger.path}: changed while it was exported; export again")
        meta = {"host": cfg.host, "created": iso(now), "since": since_s, "until": until_s, "key_fingerprint": fp,
                "first_seq": part.first_seq, "last_seq": part.last_seq, "first_prev": part.first_prev,
                "records": part.lines}
        report = _report(cfg, policy_set, part, backups, now, meta)
        whole = checking.result()
        _judge(report, cfg, part, whole, ring, now, ledger)
        streamed.result()
        writer.add("report.csv", evidence_report.to_csv(report))
        writer.add("report.html", evidence_html.render(report))
        writer.add("report.json", evidence_report.to_json(report))
        writer.finish(meta, key)
    digest = writer.sha256
    rec = evidence.record(cfg, "evidence-export", {"file": out.name, "sha256": digest, "since": since_s,
                                                   "until": until_s, "first_seq": meta["first_seq"],
                                                   "last_seq": meta["last_seq"]})
    return {"ok": whole["ok"], "out": str(out), "sha256": digest, "records": part.lines,
            "first_seq": meta["first_seq"], "last_seq": meta["last_seq"], "since": since_s, "until": until_s,
            "key_fingerprint": fp, "export_record_seq": rec["seq"], "ledger_problems": report["ledger"]["problems"],
            "conformance": {i["id"]: i["status"] for i in report["conformance"]}}


def _report(cfg, policy_set, part, backups, now: datetime, meta: dict) -> dict:
    """report.json of the period without what the whole ledger's verify says: inventory, history."""
    report = evidence_report.build(cfg, policy_set, part.records, now, cfg.host,
                                   evidence_report.inventory(cfg, policy_set, cfg.backup_hosts()), backups)
    report["period"] = {"since": meta["since"], "until": meta["until"]}
    report["ledger"] = {"records": part.lines, "first_seq": part.first_seq, "last_seq": part.last_seq,
                        "key_fingerprint": meta["key_fingerprint"]}
    return report


def _judge(report: dict, cfg, part, whole: dict, ring, now: datetime, ledger: Ledger) -> None:
    """The report's ledger state, attestations and conformance, from the whole ledger's verify."""
    report["ledger"].update({"chain_ok": whole["ok"], "problems": whole["problems"]})
    mirrored = bool(settings.of(cfg).mirror) and not ledger.index.unmirrored()
    _attest(report, part, whole, ring)
    report["conformance"] = evidence_conformance.evaluate(report, part.records, now, mirrored)


def _verify_whole(path: Path, public_raw: bytes, keyring: Path | None) -> dict:
    """The whole ledger's verify, reduced to what the report states (runs in a worker process)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    ring = keyring_mod.load(keyring) if keyring else None
    whole = verify_lines(LineFile(path), [Ed25519PublicKey.from_public_bytes(public_raw)], keyring=ring)
    return {"ok": whole.ok, "problems": [str(p) for p in whole.problems], "attestations": whole.attestations}


def _raw_public(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _attest(report: dict, part, whole, ring) -> None:
    """Who signed each drill and audit of the period (report["attestations"], drills' attested_by)."""
    low, high = part.first_seq or 0, part.last_seq or -1
    found = [a for a in whole["attestations"] if low <= a["seq"] <= high]
    by_seq = {a["seq"]: a for a in found}
    for target in report["targets"]:
        for drill in target["drills"]:
            got = by_seq.get(drill["seq"])
            drill["attested_by"] = got["role"] if got else None
    report["attestations"] = found
    report["keyring"] = keyring_mod.describe(ring)


def pull(cfg, policy_set, destination: str, out_dir: Path, host: str | None = None,
         credentials: Path | None = None, keyring: Path | None = None) -> dict:
    """Rebuild ledgers from the WORM mirror with read-only (auditor) credentials, then verify each
    against the host's first key (and rotations), the keyring and the signed checkpoints."""
    pulled = pull_hosts(cfg, policy_set, destination, out_dir, host, credentials, keyring=keyring)
    hosts = []
    for got in pulled:
        check = None
        if got.ledger and got.public_key:
            check = evidence_verify.verify(got.ledger, [got.public_key], keyring, checkpoints=got.checkpoints,
                                           host=got.host)  # rebuilt from evidence/<host>/: that host's ledger
        problems = got.problems + (check["problems"] if check else ["no records or no public key in the mirror"])
        hosts.append({"host": got.host, "records": got.records, "ledger": str(got.ledger) if got.ledger else None,
                      "public_key": str(got.public_key) if got.public_key else None,
                      "key_fingerprint": check["key_fingerprint"] if check else None,
                      "checkpoints": len(got.checkpoints),
                      "last_checkpoint": max((c["seq"] for c in got.checkpoints), default=None),
                      "attestations": check["attestations"] if check else [],
                      "notes": check["notes"] if check else [],
                      "first_key": got.first_key, "foreign_objects": got.foreign,
                      "ok": not problems, "problems": problems})
    return {"ok": bool(hosts) and all(h["ok"] for h in hosts), "bucket": pulled_bucket(policy_set, destination),
            "out": str(out_dir), "hosts": hosts}


def pulled_bucket(policy_set, destination: str) -> str:
    return policy_set.destinations[destination].bucket


def pull_hosts(cfg, policy_set, destination: str, out_dir: Path, host: str | None = None,
               credentials: Path | None = None, public_keys=(), keyring: Path | None = None) -> list:
    """mirror.pull with the auditor credentials; ConfigError/DependencyError as the CLI expects. The host's
    key chain starts at public_keys (pinned first keys) or a keyring key, else at the mirror's anchor."""
    dest = _mirror_destination(policy_set, destination)
    creds = read_credentials(credentials or cfg.secrets_dir / "s3-auditor.env")
    pinned = [keys.read_public(p) for p in public_keys]
    ring = keyring_mod.load(keyring) if keyring else None
    try:
        return mirror.pull(mirror.client(dest, creds), dest.bucket, out_dir, host, pinned, ring)
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
        # every request and the whole push end within storage_timeout_seconds (a rerun sends the rest)
        s3 = mirror.bound(cfg, mirror.Remote(name, dest, mirror.client(dest, creds), cfg.host or "", creds)).s3
        pushed = mirror.push_pending(cfg.state_dir, dest, s3, opts.retention)
        mirror.checkpoint_if_due(cfg.state_dir, dest, s3, keys.load_or_create(cfg.state_dir),
                                 opts.checkpoint_period, retention=opts.retention)
    except (BotoCoreError, ClientError) as exc:
        raise DependencyError(f"cannot write to s3://{dest.bucket}/{mirror.PREFIX}: {exc.__class__.__name__}") from None
    pending = len(Ledger(cfg.state_dir).index.unmirrored())
    return {"ok": pending == 0, "destination": name, "pushed": pushed, "pending": pending}
