"""restic snapshots: list snapshots as plain records."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from backupd.engine import command
from backupd.engine.repository import Repository
from backupd.text import printable

_HEX = re.compile(r"[0-9a-f]{1,64}")


@dataclass
class Snapshot:
    """One snapshot as restic lists it; `tagmap` holds key=value tags."""

    id: str
    short_id: str
    time: datetime
    host: str
    paths: list[str]
    tags: list[str] = field(default_factory=list)
    original: str | None = None  # set by restic copy: the id in the repository it came from

    @property
    def lineage(self) -> str:
        """The id this snapshot was first written under (stable across restic copy)."""
        return self.original or self.id

    def made_as(self, short_or_full: str) -> bool:
        """True when short_or_full names this snapshot, here or where it was copied from. Companions'
        `of=` tags are repository data: an empty or non-hex one names no snapshot (not every one)."""
        if not isinstance(short_or_full, str) or not _HEX.fullmatch(short_or_full):
            return False
        return self.id.startswith(short_or_full) or self.lineage.startswith(short_or_full)

    @property
    def tagmap(self) -> dict[str, str]:
        return dict(t.split("=", 1) for t in self.tags if "=" in t)


def parse_time(text: str) -> datetime:
    """restic's RFC 3339 time with nanoseconds -> aware datetime."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Skipped:
    """A listed snapshot Python cannot take (a year-0 time, a non-hex id, a tag that is not text): never a
    restore point. Its fields as listed, made printable and bounded (they are the repository writer's)."""

    id: str
    host: str
    time: str
    why: str  # "malformed FIELD (Error: detail)"

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def describe(self) -> str:
        return f"restic listed snapshot {self.short_id!r} with a {self.why}"


class Listing(list):
    """The snapshots of one listing, oldest first (a list), and in `skipped` the ones left out."""

    def __init__(self, snaps=(), skipped=()):
        super().__init__(snaps)
        self.skipped: list[Skipped] = list(skipped)


def skipped_in(listing) -> list[Skipped]:
    """What a listing left out (none for a plain list)."""
    return list(getattr(listing, "skipped", []))


def _printable(value, limit: int = 64) -> str:
    return printable(value if isinstance(value, str) else repr(value), limit)


def parse(stdout: bytes) -> Listing:
    """Snapshots from `restic snapshots --json` output, oldest first. A listed snapshot Python cannot
    take is left out and named in the listing's `skipped`: it is never a restore point, and one planted
    snapshot must not stop every restore, drill and forget of its target (the caller says so)."""
    snaps, skipped = [], []
    for item in json.loads(stdout or b"[]") or []:
        try:
            snaps.append(_snapshot(item))
        except _Malformed as exc:
            skipped.append(exc.skipped)
    return Listing(sorted(snaps, key=lambda s: s.time), skipped)


class _Malformed(Exception):
    def __init__(self, skipped: Skipped):
        super().__init__(skipped.why)
        self.skipped = skipped


def _snapshot(item) -> Snapshot:
    """One listed snapshot. The repository is the backup host's to write: a field Python cannot take
    (a year-0 time restic prints faithfully, a missing id) is _Malformed, naming the snapshot and field."""
    field_name = "id"
    try:
        if not isinstance(item.get("id"), str) or not _HEX.fullmatch(item["id"]):
            raise ValueError("not hex")
        field_name = "time"
        when = parse_time(item["time"])
        field_name = "paths/tags"
        paths, tags = item.get("paths") or [], item.get("tags") or []
        if not all(isinstance(v, str) for v in [*paths, *tags, item.get("hostname", "")]):
            raise ValueError("not text")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        got = item if isinstance(item, dict) else {}
        raise _Malformed(Skipped(
            id=_printable(got.get("id", "?")), host=_printable(got.get("hostname", "")),
            time=_printable(got.get("time", "")),
            why=f"malformed {field_name} ({type(exc).__name__}: {_printable(str(exc), 80)!r})")) from None
    original = item.get("original")
    return Snapshot(id=item["id"], short_id=item["id"][:8], time=when, host=item.get("hostname", ""),
                    paths=list(paths), tags=list(tags),
                    original=original if isinstance(original, str) and _HEX.fullmatch(original) else None)


def list_snapshots(repo: Repository, *, tags: list[str] | None = None, host: str | list[str] | None = None,
                   ids: list[str] | None = None, lock: bool = True) -> Listing:
    """Snapshots matching all `tags` (AND) and the host (any of a list); oldest first. `lock=False` reads
    without a repository lock (--no-lock: no lock object written, listed and removed, ~0.25 s less),
    for a listing whose choice a locked command acts on next (a drill's or restore's restore). Snapshots
    Python cannot take are in the result's `skipped`, for the caller to name."""
    args: list[str] = [] if lock else ["--no-lock"]
    for name in [host] if isinstance(host, str) else host or []:
        if name:
            args += ["--host", name]
    if tags:
        args += ["--tag", ",".join(tags)]
    args += list(ids or [])
    done = command.run(repo, "snapshots", *args, what=f"list snapshots in {repo.name}", timeout=600)
    return parse(done.stdout)


def cached_full_id(repo: Repository, short_id: str, written_since: float) -> str | None:
    """The full id of the snapshot `short_id` that restic wrote into its local cache since `written_since`
    (epoch seconds): a backup stores its new snapshot file there too (<cache>/<repository id>/snapshots/
    <2 hex>/<full id>, restic 0.14 to 0.18), so restic before 0.16, which reports 8 digits, needs no
    second start-up (its key derivation alone is ~0.5 s) to name it. None unless exactly one such file
    matches: the caller lists the repository instead."""
    if repo.cache_dir is None or not re.fullmatch(r"[0-9a-f]{8,64}", short_id):
        return None
    found = []
    try:
        repos = list(os.scandir(repo.cache_dir))
    except OSError:
        return None
    for entry in repos:
        shard = os.path.join(entry.path, "snapshots", short_id[:2])
        try:
            names = [n for n in os.listdir(shard) if n.startswith(short_id)]
            found += [n for n in names if len(n) == 64 and _HEX.fullmatch(n)
                      and os.stat(os.path.join(shard, n)).st_mtime >= written_since]
        except OSError:
            continue
    return found[0] if len(found) == 1 else None
