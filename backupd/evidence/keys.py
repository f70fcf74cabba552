"""The evidence signing key (Ed25519): created on first use, private part never leaves state_dir/keys.

Files: `evidence-ed25519.key` (PKCS#8 PEM, mode 0600, directory 0700) and `evidence-ed25519.pub`
(SubjectPublicKeyInfo PEM) that operators publish and auditors pin with `--public-key`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backupd.errors import ConfigError

from backupd.evidence.canonical import sha256

KEY_NAME = "evidence-ed25519.key"
PUB_NAME = "evidence-ed25519.pub"


def key_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "keys"


def fingerprint(public: Ed25519PublicKey) -> str:
    """Short key id carried in every record: SHA-256 of the raw public key, first 16 hex digits."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256(raw)[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_or_create(state_dir: Path) -> Ed25519PrivateKey:
    """The host's signing key; generated (and its public half exported) on first use."""
    kdir = key_dir(state_dir)
    kdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(kdir, 0o700)
    path = kdir / KEY_NAME
    with open(kdir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two first runs must not create two keys
        if not path.exists():
            _create(path)
    _check_private(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise ConfigError(f"{path}: unreadable evidence signing key (restore it from the key backup)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    pub = kdir / PUB_NAME
    if not pub.exists():
        pub.write_bytes(public_pem(key.public_key()))
    return key


def _check_private(path: Path) -> None:
    """The key must be readable by the signing process's user only (0600, owned by it; root may read it)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the evidence signing key ({exc.strerror})") from None
    if st.st_mode & 0o077:
        raise ConfigError(f"{path}: mode {oct(st.st_mode & 0o777)} lets other users read the evidence signing key; "
                          f"run `chmod 600 {path}` (only the signing process may read it)")
    if os.geteuid() not in (0, st.st_uid):
        raise ConfigError(f"{path}: owned by uid {st.st_uid}, not by this process (uid {os.geteuid()}); run backupd as "
                          f"the user that owns state_dir")


def _create(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    write_private(path, key)
    (path.parent / PUB_NAME).write_bytes(public_pem(key.public_key()))
    return key


def write_private(path: Path, key: Ed25519PrivateKey) -> None:
    """A new 0600 PKCS#8 file (never overwrites; fsynced)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())


def pending_path(state_dir: Path) -> Path:
    """Where `evidence rotate-key` keeps the new key until its key-rotation record is written."""
    return key_dir(state_dir) / (KEY_NAME + ".new")


def load_private(path: Path) -> Ed25519PrivateKey:
    _check_private(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise ConfigError(f"{path}: unreadable evidence signing key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def promote_pending(state_dir: Path) -> None:
    """Make the pending key the signing key; the old public key stays in keys/retired/<kid>.pub."""
    kdir = key_dir(state_dir)
    pending = pending_path(state_dir)
    new = load_private(pending)
    old_pub = kdir / PUB_NAME
    if old_pub.exists():
        retired = kdir / "retired"
        retired.mkdir(mode=0o700, exist_ok=True)
        data = old_pub.read_bytes()
        (retired / f"{fingerprint(load_public(data, str(old_pub)))}.pub").write_bytes(data)
    os.replace(pending, kdir / KEY_NAME)  # the old private key is gone: records it signs now are rejected
    tmp = kdir / (PUB_NAME + ".tmp")
    tmp.write_bytes(public_pem(new.public_key()))
    os.replace(tmp, old_pub)


def load_public(data: bytes, what: str = "public key") -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes; ConfigError when it is not one."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError(f"{what}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{what}: not an Ed25519 public key")
    return key


def read_public(path: Path) -> Ed25519PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read public key ({exc.strerror})") from None
    return load_public(data, str(path))


def valid(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public.verify(signature, message)
        return True
    except InvalidSignature:
        return False
