"""Seal a secret to an X25519 public key and open it with the private key (JSON envelope)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timezone

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = "backupd-escrow-v1"
ALGORITHM = "X25519 + HKDF-SHA256 + ChaCha20-Poly1305"


class EscrowError(ValueError):
    """The envelope or key is malformed, or the key does not open it."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public: X25519PublicKey) -> str:
    return "sha256:" + hashlib.sha256(_raw(public)).hexdigest()


def load_public(pem: bytes) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise EscrowError("not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise EscrowError("the recovery public key must be X25519 (openssl genpkey -algorithm X25519)")
    return key


def load_private(pem: bytes) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise EscrowError("not an unencrypted PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise EscrowError("the recovery private key must be X25519")
    return key


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient,
                info=FORMAT.encode()).derive(shared)


def _aad(label: str, recipient_fp: str) -> bytes:
    return json.dumps([FORMAT, label, recipient_fp]).encode()


def seal(secret: bytes, public: X25519PublicKey, label: str) -> dict:
    """Envelope of secret for the holder of public's private key; label (destination) is authenticated."""
    eph = X25519PrivateKey.generate()
    eph_pub = _raw(eph.public_key())
    key = _key(eph.exchange(public), eph_pub, _raw(public))
    nonce = os.urandom(12)
    fp = fingerprint(public)
    ct = ChaCha20Poly1305(key).encrypt(nonce, secret, _aad(label, fp))
    return {"format": FORMAT, "algorithm": ALGORITHM, "label": label, "recipient": fp,
            "ephemeral_public": _b64(eph_pub), "nonce": _b64(nonce), "ciphertext": _b64(ct),
            "created": datetime.now(timezone.utc).isoformat()}


def open_envelope(envelope: dict, private: X25519PrivateKey) -> bytes:
    """The secret sealed in envelope; EscrowError when it is not ours or was altered."""
    try:
        if envelope.get("format") != FORMAT:
            raise EscrowError(f"unknown escrow format {envelope.get('format')!r}")
        eph_pub = base64.b64decode(envelope["ephemeral_public"], validate=True)
        nonce = base64.b64decode(envelope["nonce"], validate=True)
        ct = base64.b64decode(envelope["ciphertext"], validate=True)
        public = private.public_key()
        if envelope.get("recipient") != fingerprint(public):
            raise EscrowError("sealed to a different recovery key")
        key = _key(private.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub, _raw(public))
        return ChaCha20Poly1305(key).decrypt(nonce, ct, _aad(envelope["label"], envelope["recipient"]))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, EscrowError):
            raise
        raise EscrowError("malformed escrow envelope") from None
    except InvalidTag:
        raise EscrowError("escrow envelope was altered or the key does not match") from None
