"""Facts recorded about a streamed dump while it passes into restic."""

from __future__ import annotations

import hashlib


class StreamFacts:
    """A tap for the dump stream: counts bytes and computes SHA-256 on the way through."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.bytes = 0

    def __call__(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.bytes += len(chunk)

    def facts(self) -> dict:
        return {"bytes": self.bytes, "sha256": self.sha.hexdigest()}
