"""The writer's confinement to its own prefixes, proven by a write it must be refused.

With the daemon's keys, `backupd audit storage` PUTs one small object under another host's evidence prefix:
`evidence/<PROBE_HOST>/<this host>-<random>`. PROBE_HOST is a valid host name that no real host may use
(`evidence pull` reports objects under it as confinement-probe strays, never as a host), so the probe tests
exactly what a forger needs (a write under `evidence/<another host>/`) without touching a real ledger. A
refusal is the pass; an accepted PUT is a finding that names the stray object, which Object Lock then keeps.
"""

from __future__ import annotations

import secrets

from botocore.exceptions import ClientError

from backupd.storage.checks import Check, passed
from backupd.storage.client import denied, error_code

#: Reserved host name of the confinement probe (never a real host: `evidence pull` reports it as strays).
PROBE_HOST = "backupd-confinement-probe"
PROBE_BODY = b"backupd confinement probe: a writer could PUT under another host's evidence prefix\n"


def probe_key(own_host: str) -> str:
    return f"evidence/{PROBE_HOST}/{own_host}-{secrets.token_hex(6)}"


def confinement_probe(writer, bucket: str, own_host: str) -> Check:
    """PUT under another host's evidence prefix with the writer's keys: refused is ok, accepted a finding."""
    if own_host == PROBE_HOST:
        return Check("writer_confinement", False, f"host name {PROBE_HOST!r} is reserved for the confinement "
                     "probe; rename this host", "warning")
    key = probe_key(own_host)
    try:
        version = writer.put_object(Bucket=bucket, Key=key, Body=PROBE_BODY).get("VersionId")
    except ClientError as exc:
        if denied(exc):
            return passed("writer_confinement", f"writer may not write under another host's evidence prefix "
                          f"(evidence/{PROBE_HOST}/: {error_code(exc)})")
        return Check("writer_confinement", False, f"writing under another host's evidence prefix answered "
                     f"{error_code(exc)}, not a refusal: confinement unproven", "warning")
    return Check("writer_confinement", False, f"NOT CONFINED: the daemon's writer keys wrote s3://{bucket}/{key} "
                 f"(version {version or 'none'}), under another host's evidence prefix: this host can forge or "
                 "block other hosts' evidence; confine the writer to its own prefixes (deploy/iam/writer.json, "
                 "deploy/seaweedfs/s3-identities.example.json). The stray object stays (locked); `evidence pull` "
                 "lists it")
