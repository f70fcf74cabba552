"""Password generation and escrow to an offline X25519 recovery key."""

import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from backupd.keys import escrow, password


def _pems():
    private = X25519PrivateKey.generate()
    priv = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    pub = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


def test_password_file_is_strong_and_private(tmp_path):
    path = tmp_path / "secrets" / "pw"
    assert password.ensure(path) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = password.read(path)
    assert len(text) >= 43
    assert password.ensure(path) is False and password.read(path) == text
    assert password.generate() != password.generate()


def test_escrow_round_trip_and_no_plaintext():
    priv, pub = _pems()
    env = escrow.seal(b"hunter2-secret-password", escrow.load_public(pub), "worm")
    assert b"hunter2" not in repr(env).encode()
    assert escrow.open_envelope(env, escrow.load_private(priv)) == b"hunter2-secret-password"


def test_escrow_refuses_other_key_and_tampering():
    priv, pub = _pems()
    other, _ = _pems()
    env = escrow.seal(b"s3cret", escrow.load_public(pub), "worm")
    with pytest.raises(escrow.EscrowError, match="different recovery key"):
        escrow.open_envelope(env, escrow.load_private(other))
    with pytest.raises(escrow.EscrowError, match="altered"):
        escrow.open_envelope({**env, "label": "usb"}, escrow.load_private(priv))
    with pytest.raises(escrow.EscrowError, match="malformed"):
        escrow.open_envelope({**env, "nonce": "!!"}, escrow.load_private(priv))


def test_escrow_rejects_non_x25519_keys():
    with pytest.raises(escrow.EscrowError):
        escrow.load_public(b"not a key")
    from cryptography.hazmat.primitives.asymmetric import ed25519
    pem = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(escrow.EscrowError, match="X25519"):
        escrow.load_public(pem)
