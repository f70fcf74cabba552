"""Export bundles (.tar.gz): ledger slice, public key, reports and a signed manifest of SHA-256s.

Layout: manifest.json, manifest.sig (base64 Ed25519 over manifest.json), ledger.jsonl,
evidence-ed25519.pub, report.json, report.csv, report.html. Reading never extracts to disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from isal import igzip

from backupd.errors import ConfigError
from backupd.evidence import canonical, keys, record_format
from backupd.evidence.ledger import split_lines
from backupd.evidence.verify import ChainReport, Problem, verify_lines

FORMAT = "backupd-evidence-bundle/1"
MANIFEST, SIGNATURE, LEDGER, PUBLIC_KEY = "manifest.json", "manifest.sig", "ledger.jsonl", keys.PUB_NAME
MAX_MEMBERS, MAX_BYTES = 64, 2 * 1024**3


#: gzip level 1 through ISA-L (isal): a million-record ledger (430 MB) compresses in about 1 CPU-second
#: instead of zlib's 5-6, to a slightly smaller file; any gzip reader (tarfile, gunzip) reads it. Higher
#: levels buy a few percent at best: the records' hashes and signatures do not compress.
COMPRESSLEVEL = 1
#: tarfile's copy buffer for streamed members (its default, 16 KiB, costs a Python round trip per block).
COPY_BUFFER = 1 << 20


def write(out: Path, files: dict[str, bytes], meta: dict, private_key) -> dict:
    """Write the bundle atomically; returns the manifest."""
    with Writer(out) as writer:
        for name in sorted(files):
            writer.add(name, files[name])
        return writer.finish(meta, private_key)


class Writer:
    """A bundle written member by member, then its signed manifest; atomic (a .tmp renamed at finish).

    `add_range` streams a byte range of a file (the ledger slice) into the bundle, hashing it on the
    way, so an export never holds the ledger in memory. Members may be added from one other thread
    while the caller prepares the next (gzip releases the GIL).
    """

    def __init__(self, out: Path):
        self.out, self.tmp = Path(out), Path(out).with_name(Path(out).name + ".tmp")
        self.raw = _HashingWriter(open(self.tmp, "wb"))
        self.gz = igzip.IGzipFile(fileobj=self.raw, mode="wb", compresslevel=COMPRESSLEVEL)
        self.sha256: str | None = None  # of the bundle file, once finished
        self.tar = tarfile.open(fileobj=self.gz, mode="w", copybufsize=COPY_BUFFER)
        self.files: dict[str, str] = {}
        self.done = False

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        if not self.done:
            self._close()
            self.tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        """tarfile does not close a file object it was given: the gzip stream, then the file."""
        try:
            self.tar.close()
            self.gz.close()
        finally:
            self.raw.close()

    def add(self, name: str, data: bytes) -> None:
        self._member(name, len(data), io.BytesIO(data))
        self.files[name] = canonical.sha256(data)

    def add_range(self, name: str, path: Path, offset: int, size: int) -> str:
        """Member name = path's bytes [offset, offset + size); returns their SHA-256."""
        with open(path, "rb") as handle:
            handle.seek(offset)
            reader = _Hashing(handle)
            try:
                self._member(name, size, reader)
            except OSError:  # tarfile: "unexpected end of data"
                reader.count = -1
        if reader.count != size:
            raise ConfigError(f"{path}: changed while it was exported (expected {size} bytes at {offset})")
        self.files[name] = reader.sha.hexdigest()
        return self.files[name]

    def _member(self, name: str, size: int, fileobj) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(time.time()), 0o644
        self.tar.addfile(info, fileobj)

    def finish(self, meta: dict, private_key) -> dict:
        """Add manifest.json (every member's SHA-256) and manifest.sig; returns the manifest."""
        manifest = {**meta, "format": FORMAT, "files": dict(sorted(self.files.items()))}
        body = canonical.dumps(canonical.normalise(manifest))
        self._member(MANIFEST, len(body), io.BytesIO(body))
        sig = base64.b64encode(private_key.sign(body)) + b"\n"
        self._member(SIGNATURE, len(sig), io.BytesIO(sig))
        self._close()
        self.sha256 = self.raw.sha.hexdigest()
        os.replace(self.tmp, self.out)
        self.done = True
        return manifest


class _Hashing:
    """A file object that hashes and counts what tarfile reads from it."""

    def __init__(self, handle):
        self.handle, self.sha, self.count = handle, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha.update(data)
        self.count += len(data)
        return data


class _HashingWriter:
    """The bundle file, hashed as it is written (no second read of a bundle of hundreds of MB)."""

    def __init__(self, handle):
        self.handle, self.sha = handle, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def is_bundle(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def read(path: Path) -> dict[str, bytes]:
    """Members of a bundle by name; ConfigError when it is not a readable bundle."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for info in tar:
                if len(out) >= MAX_MEMBERS or info.size > MAX_BYTES or not info.isfile():
                    raise ConfigError(f"{path}: unexpected member {info.name!r} in an evidence bundle")
                out[info.name] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigError(f"{path}: not a readable evidence bundle ({exc.__class__.__name__})") from None
    return out


@dataclass
class BundleReport:
    chain: ChainReport
    problems: list[Problem] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    key_source: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and self.chain.ok


def verify(members: dict[str, bytes], pinned=None, keyring=None, all_signatures: bool = False) -> BundleReport:
    """Manifest signature and hashes, then the ledger slice it declares.

    pinned: a trusted public key or a list of them; keyring: roles (keyring.Keyring) whose keys are
    trusted too. Without either, the bundle's own key is used (self-consistency only).
    """
    problems: list[Problem] = []
    pins = list(pinned) if isinstance(pinned, (list, tuple)) else ([pinned] if pinned is not None else [])
    bundled = _bundled_key(members, problems)
    if pins or keyring is not None:
        trusted, source = pins, "keyring" if keyring is not None and not pins else "--public-key"
    else:
        trusted, source = ([bundled] if bundled else []), "bundle (pin it with --public-key for independent assurance)"
        if bundled is None:
            problems.append(Problem(None, f"{PUBLIC_KEY}: missing; pass --public-key"))
    manifest, body, sig = _manifest(members, problems)
    for name, digest in (manifest.get("files") or {}).items():
        if name not in members:
            problems.append(Problem(None, f"{name}: listed in the manifest but missing from the bundle"))
        elif canonical.sha256(members[name]) != digest:
            problems.append(Problem(None, f"{name}: SHA-256 differs from the manifest (changed)"))
    extra = set(members) - set(manifest.get("files") or {}) - {MANIFEST, SIGNATURE}
    problems += [Problem(None, f"{n}: not listed in the manifest (added)") for n in sorted(extra)]
    data = members.get(LEDGER, b"")
    chain = verify_lines(split_lines(data), trusted, first_seq=int(manifest.get("first_seq") or 1),
                         first_prev=str(manifest.get("first_prev") or record_format.GENESIS),
                         torn_tail=bool(data) and not data.endswith(b"\n"), keyring=keyring,
                         all_signatures=all_signatures, host=_host(manifest))
    known = chain.trusted_keys or {keys.fingerprint(k): k for k in trusted}
    if bundled is not None and (pins or keyring is not None) and keys.fingerprint(bundled) not in known:
        problems.append(Problem(None, f"the bundle's public key {keys.fingerprint(bundled)} is not a trusted key "
                                      f"({', '.join(sorted(known)) or 'none'})"))
    if body is not None:
        signer = known.get(str(manifest.get("key_fingerprint"))) or (
            bundled if bundled is not None and keys.fingerprint(bundled) in known else None)
        if signer is not None and not keys.valid(signer, sig, body):
            problems.append(Problem(None, f"{MANIFEST}: signature does not verify (manifest changed or wrong key)"))
        elif signer is None and known:
            problems.append(Problem(None, f"{MANIFEST}: signed by key {manifest.get('key_fingerprint')}, which is "
                                          f"not a trusted key"))
    if manifest and chain.last_seq != manifest.get("last_seq"):
        problems.append(Problem(manifest.get("last_seq"), f"the manifest declares records up to seq "
                                f"{manifest.get('last_seq')} but the ledger ends at seq {chain.last_seq} (truncated)"))
    return BundleReport(chain, problems, manifest, source)


def _host(manifest: dict) -> str | None:
    """The host the manifest names (signed with it): the slice must be that host's records."""
    host = manifest.get("host")
    return host if isinstance(host, str) and host else None


def _bundled_key(members: dict[str, bytes], problems: list[Problem]):
    if PUBLIC_KEY not in members:
        return None
    try:
        return keys.load_public(members[PUBLIC_KEY], PUBLIC_KEY)
    except ConfigError as exc:
        problems.append(Problem(None, str(exc)))
        return None


def _manifest(members: dict[str, bytes], problems: list[Problem]) -> tuple[dict, bytes | None, bytes]:
    """(manifest, its bytes, its signature); ({}, None, b"") when missing or damaged."""
    body = members.get(MANIFEST)
    if body is None:
        problems.append(Problem(None, f"{MANIFEST}: missing"))
        return {}, None, b""
    try:
        sig = base64.b64decode(members.get(SIGNATURE, b"").strip(), validate=True)
        manifest = json.loads(body)
    except (binascii.Error, ValueError):
        problems.append(Problem(None, f"{MANIFEST} or {SIGNATURE} is damaged"))
        return {}, None, b""
    return (manifest if isinstance(manifest, dict) else {}), body, sig
