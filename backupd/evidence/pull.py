"""Rebuilding each host's ledger from the WORM mirror, keeping only what the host's key chain signed.

Any identity with a write grant on the bucket may add objects (or versions) under another host's prefix.
So for every key the oldest version signed by the host's key chain is used: the chain starts at the
pinned first key (`--public-key`, given out of band) or, unpinned, at the oldest version of
`evidence-ed25519.pub` that signs the first record (a keyring's key preferred), and grows through
key-rotation records. Every other version, and every object under the prefix that is no evidence object,
is a foreign object (PulledHost.foreign and .problems); a prefix with nothing signed by a first key is an
unverifiable host.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path

from backupd.errors import ConfigError
from backupd.evidence import canonical, checkpoint, foreign, keys, record_format
from backupd.storage.evidence_objects import EVIDENCE_PREFIX as PREFIX

SHOWN = 20  # foreign objects named one by one in problems; the rest are counted


class NoEvidence(ConfigError):
    """The mirror holds no object of the host asked for."""


@dataclass
class PulledHost:
    host: str
    records: int = 0
    ledger: Path | None = None
    public_key: Path | None = None
    problems: list[str] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)  # signed by the host's key chain (parsed)
    foreign: list[dict] = field(default_factory=list)  # {key, version_id, size, sha256, why}
    first_key: str | None = None  # where the chain's first key came from


def listing(s3, bucket: str, prefix: str) -> dict[str, list[tuple[str | None, int]]]:
    """key -> [(version id, size)], oldest first (S3 lists newest first); None when unversioned."""
    out: dict[str, list] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            vid = v.get("VersionId")
            out.setdefault(v["Key"], []).append((None if vid in (None, "null") else vid, v.get("Size", 0)))
    return {k: list(reversed(vs)) for k, vs in out.items()}


def pull(s3, bucket: str, out_dir: Path, host: str | None = None, pinned=(), keyring=None) -> list[PulledHost]:
    """Rebuild each host's ledger under out_dir/<host>/ from the versions its key chain signed.

    pinned: public keys the auditor trusts as the first key (then the mirror's anchor only has to agree);
    keyring: its keys are preferred among the anchor's versions. Records are appended to ledger.jsonl as
    they are read (seq order: the keys are zero-padded), so a long ledger never sits in memory."""
    found = listing(s3, bucket, f"{PREFIX}{host}/" if host else PREFIX)
    by_host: dict[str, dict] = {}
    for key, versions in found.items():
        name = key[len(PREFIX):].split("/")[0]
        if name and not name.startswith(".") and ".." not in name:
            by_host.setdefault(name, {})[key] = versions
    if host and host not in by_host:
        raise NoEvidence(f"no evidence of host {host!r} in s3://{bucket}/{PREFIX}")
    return [_Host(s3, bucket, name, by_host[name]).pull(out_dir / name, list(pinned), keyring)
            for name in sorted(by_host)]


class _Host:
    """One host's prefix: its versions, the trusted keys as the chain is walked, what it found."""

    def __init__(self, s3, bucket: str, name: str, versions: dict):
        self.s3, self.bucket, self.versions = s3, bucket, versions
        self.base = f"{PREFIX}{name}/"
        self.got = PulledHost(name)
        self.trusted: dict = {}

    def pull(self, out: Path, pinned: list, keyring) -> PulledHost:
        got = self.got
        records = sorted(k for k in self.versions if _part(k, self.base)[0] == "records")
        first = self._first_key(records, pinned, keyring)
        if first is None:
            got.problems.append(f"{self.base}: unverifiable host: no object there verifies under a first key "
                                f"({'the pinned key' if pinned else 'no version of ' + keys.PUB_NAME + ' signs its first record'}); "
                                f"every object under it is foreign")
            for key in sorted(self.versions):
                self._foreign_all(key, "not signed by a first key of this host")
            self._summarise()
            return got
        got.public_key = _write(out / keys.PUB_NAME, keys.public_pem(first[0]))
        got.first_key = first[1]
        self.trusted = {keys.fingerprint(k): k for k in [first[0], *pinned]}
        self._records(records, out)
        for key in sorted(self.versions):
            if key not in records:
                self._other(key)
        if got.checkpoints:
            _write(out / "checkpoints.jsonl", b"".join(canonical.dumps(c) + b"\n" for c in got.checkpoints))
        self._summarise()
        return got

    def _first_key(self, records: list[str], pinned: list, keyring) -> tuple | None:
        """(public key, source) the chain starts from, or None when nothing signs the first record.

        A pinned key that signs the first record is the start; one that does not (the auditor pinned a later
        key) leaves the start to the anchor rule, and verify then links the chain to the pinned key."""
        ring = dict(getattr(keyring, "keys", None) or {})
        anchors = self._anchors()
        anchors.sort(key=lambda k: keys.fingerprint(k) not in ring)  # stable: a keyring key first, else oldest
        signed = self._signers(records[0], [*pinned, *anchors]) if records else None
        for key in pinned:
            if signed is None or keys.fingerprint(key) in signed:
                return key, "--public-key (pinned)"
        for key in anchors:
            if signed is None or keys.fingerprint(key) in signed:
                where = "in the keyring" if keys.fingerprint(key) in ring else "the oldest that signs the first record"
                return key, f"{keys.PUB_NAME} in the mirror ({where})"
        return None

    def _anchors(self) -> list:
        """The public keys in the versions of evidence-ed25519.pub, oldest first (what is no key is skipped)."""
        found = []
        for vid, _size in self.versions.get(self.base + keys.PUB_NAME, []):
            try:
                found.append(keys.load_public(foreign.read(self.s3, self.bucket, self.base + keys.PUB_NAME, vid)
                                              or b"", keys.PUB_NAME))
            except ConfigError:
                continue
        return found

    def _signers(self, key: str, candidates: list) -> set[str]:
        """The kids among candidates that sign some version of key; the versions are read one at a time
        (they are attacker input: many large ones must not sit in memory together)."""
        trusted = {keys.fingerprint(k): k for k in candidates}
        found = set()
        for vid, _size in self.versions[key]:
            body = foreign.read(self.s3, self.bucket, key, vid)
            kid = foreign.signer(key, body, trusted) if body and len(body) <= foreign.MAX_BYTES else None
            if kid:
                found.add(kid)
        return found

    def _records(self, records: list[str], out: Path) -> None:
        got = self.got
        got.ledger = _write(out / "ledger.jsonl", b"")
        with open(got.ledger, "ab") as ledger:
            for key in records:
                body = self._choose(key, self._rotate)
                if body is not None:
                    ledger.write(body if body.endswith(b"\n") else body + b"\n")
                    got.records += 1

    def _choose(self, key: str, accepted=None) -> bytes | None:
        """The oldest version of key the trusted keys signed; every other, different version is foreign."""
        chosen = None
        for vid, size in self.versions[key]:
            body = foreign.read(self.s3, self.bucket, key, vid)
            if body is None or body == chosen:
                continue
            ours = len(body) <= foreign.MAX_BYTES and foreign.signer(key, body, self.trusted)
            if chosen is None and ours:
                chosen = body
                if accepted:
                    accepted(body)
                continue
            why = ("signed by the host's key but differs from its older version (the record was rewritten)" if ours
                   else "not signed by the host's key chain")
            self._note(key, vid, size, body, why)
        return chosen

    def _rotate(self, body: bytes) -> None:
        """A key-rotation record of the chain: its new key (proven by its signature) signs from here on."""
        new = rotated_key(record_format.parse(body.rstrip(b"\n")))
        if new is not None:
            self.trusted[keys.fingerprint(new)] = new

    def _other(self, key: str) -> None:
        part = _part(key, self.base)
        if part[0] == "checkpoints" and len(part) == 2:
            body = self._choose(key)
            if body is not None:
                self.got.checkpoints.append(checkpoint.parse(body.strip()))
        elif part == [keys.PUB_NAME] or (part[0] == "keys" and len(part) == 2 and part[1].endswith(".pub")):
            self._keys(key, part)
        else:
            self._foreign_all(key, "not an object backupd writes")

    def _keys(self, key: str, part: list[str]) -> None:
        """The anchor and keys/<kid>.pub: versions holding a key of the chain (the right kid) are the host's."""
        for vid, size in self.versions[key]:
            body = foreign.read(self.s3, self.bucket, key, vid) or b""
            kid = foreign.signer(key, body, self.trusted)
            if kid is None:  # foreign.signer: a key of the chain, under its own kid
                self._note(key, vid, size, body, "not a key of the host's key chain")

    def _foreign_all(self, key: str, why: str) -> None:
        for vid, size in self.versions[key]:
            self.got.foreign.append({"key": key, "version_id": vid, "size": size, "sha256": None, "why": why})

    def _note(self, key: str, vid, size: int, body: bytes, why: str) -> None:
        self.got.foreign.append({"key": key, "version_id": vid, "size": size,
                                 "sha256": canonical.sha256(body[:foreign.MAX_BYTES]), "why": why})

    def _summarise(self) -> None:
        for obj in self.got.foreign[:SHOWN]:
            self.got.problems.append(f"foreign object {obj['key']} (version {obj['version_id']}, {obj['size']} "
                                     f"bytes{', sha256 ' + obj['sha256'][:16] if obj['sha256'] else ''}): "
                                     f"{obj['why']}; another identity wrote under this host's prefix")
        if len(self.got.foreign) > SHOWN:
            self.got.problems.append(f"{len(self.got.foreign) - SHOWN} more foreign object(s) under {self.base}")


def rotated_key(rec: dict):
    """The new key of a well-formed key-rotation record whose new key signed its statement, else None
    (verify.py judges the record in full)."""
    data = rec.get("data")
    if rec.get("kind") != record_format.ROTATION or not isinstance(data, dict):
        return None
    try:
        new = keys.load_public(str(data["new_public_key"]).encode("ascii", "replace"), "new_public_key")
        proof = base64.b64decode(str(data["new_key_signature"]), validate=True)
    except (KeyError, ConfigError, binascii.Error, ValueError):
        return None
    statement = record_format.rotation_statement(rec["seq"], rec["prev"], rec["host"], rec["time"], rec["kid"],
                                                 keys.fingerprint(new))
    return new if keys.valid(new, proof, statement) else None


def _part(key: str, base: str) -> list[str]:
    return key[len(base):].split("/")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
