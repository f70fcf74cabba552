"""restic list index / cat index: which blobs the index places in which pack (read without touching
the packs, so it works for a pack whose data is damaged)."""

from __future__ import annotations

import json

from backupd.engine import command
from backupd.engine.repository import Repository


def parse_packs(data: bytes, wanted: list[str]) -> dict[str, list[tuple[str, str]]]:
    """{pack id (as wanted, full or prefix): [(blob type, blob id), ...]} from one `restic cat index`."""
    out: dict[str, list[tuple[str, str]]] = {}
    try:
        doc = json.loads(data or b"{}")
    except ValueError:
        return out
    for pack in doc.get("packs") or []:
        pid = str(pack.get("id", ""))
        for want in wanted:
            if pid.startswith(want):
                out.setdefault(want, []).extend((str(b.get("type", "")), str(b.get("id", "")))
                                                for b in pack.get("blobs") or [])
    return out


def blobs_of_packs(repo: Repository, packs: list[str], timeout: float = 600) -> dict[str, list[tuple[str, str]]]:
    """The blobs each pack holds according to the repository's index files."""
    done = command.run(repo, "list", "index", what=f"list index of {repo.name}", json=False, timeout=timeout)
    found: dict[str, list[tuple[str, str]]] = {}
    for index_id in done.stdout.decode("ascii", "replace").split():
        cat = command.run(repo, "cat", "index", index_id, what=f"read index of {repo.name}", json=False,
                          timeout=timeout)
        for pack, blobs in parse_packs(cat.stdout, packs).items():
            found.setdefault(pack, []).extend(blobs)
    return found
