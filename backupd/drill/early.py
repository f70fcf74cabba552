"""Early verification for a restore whose manifest is still being read (a full drill reads it alongside
the restore): an EarlyHasher that starts when the manifest arrives."""

from __future__ import annotations

import threading
from pathlib import Path

from backupd.files.verify import EarlyHasher


class LateHasher:
    """`with LateHasher(root) as early:` then, from any thread, `early.start(doc)` once the manifest is
    known; files restic wrote before are hashed by the hasher's first scan. `early.matched` as with
    EarlyHasher (empty when the manifest came after the restore). A start after the block is ignored."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._hasher: EarlyHasher | None = None
        self._closed = False

    def start(self, manifest_doc: dict) -> None:
        with self._lock:
            if not self._closed and self._hasher is None:
                self._hasher = EarlyHasher(self.root, manifest_doc).__enter__()

    def __enter__(self) -> LateHasher:
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._closed = True
        if self._hasher is not None:
            self._hasher.__exit__(*exc)

    @property
    def matched(self) -> set[str]:
        return self._hasher.matched if self._hasher is not None else set()
