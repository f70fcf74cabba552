"""Repository passwords: generation, escrow to an offline recovery key, and recovery.

Escrow is sealed-box style: an ephemeral X25519 key agrees a secret with the recovery public key,
HKDF-SHA256 derives a ChaCha20-Poly1305 key, and the destination name is bound as associated data.
Only the holder of the offline private key can open it; the daemon host never holds that key.
"""
