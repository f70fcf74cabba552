"""Which media of a rotation set are attached: mounted filesystems identified by filesystem UUID or label,
never by mount path alone (any disk can be mounted at /media/backup).

`mounted()` lists the mounted block-device filesystems (findmnt --json, which asks libblkid for UUID and
label); where findmnt cannot tell (no udev database, not root), /dev/disk/by-uuid and by-label name the
device. `match(medium, fs)` and `attached(media, found)` compare them with the policy's media. Labels and
UUIDs come from whoever formatted the disk: shown through text.printable only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from backupd.errors import DependencyError
from backupd.process import execute
from backupd.text import printable

FINDMNT = ("findmnt", "--json", "--list", "-o", "TARGET,SOURCE,FSTYPE,UUID,LABEL,OPTIONS")
DISK_DIR = Path("/dev/disk")


@dataclass(frozen=True)
class Filesystem:
    """One mounted filesystem on a block device."""

    mountpoint: Path
    device: str
    fstype: str | None
    uuid: str | None  # lower case
    label: str | None
    read_only: bool

    def describe(self) -> str:
        """'/dev/sdb1 at /media/x (uuid ..., label ...)', printable."""
        return (f"{printable(self.device, 80)} at {printable(str(self.mountpoint), 200)} (uuid "
                f"{printable(self.uuid or '-', 40)}, label {printable(self.label or '-', 64)})")


def mounted(disk_dir: Path = DISK_DIR) -> list[Filesystem]:
    """The mounted filesystems whose source is a block device (/dev/...); DependencyError without findmnt."""
    done = execute.run(list(FINDMNT), timeout=30)
    if done.returncode != 0 or done.timed_out:
        raise DependencyError(f"findmnt failed (exit {done.returncode}): {printable(done.stderr.strip(), 200)}")
    return parse(done.stdout, disk_dir)


def parse(stdout: bytes, disk_dir: Path = DISK_DIR) -> list[Filesystem]:
    """Filesystems from `findmnt --json --list` output; UUID/label completed from disk_dir's links."""
    try:
        rows = json.loads(stdout or b"{}").get("filesystems") or []
    except (ValueError, AttributeError):
        raise DependencyError("findmnt printed no JSON list of filesystems") from None
    links = _links(disk_dir)
    out = []
    for row in rows:
        source, target = row.get("source"), row.get("target")
        if not isinstance(source, str) or not source.startswith("/dev/") or not isinstance(target, str):
            continue
        device = source.split("[", 1)[0]  # a bind or btrfs subvolume: /dev/sdb1[/sub]
        real = os.path.realpath(device)
        uuid = _text(row.get("uuid")) or links.get(("by-uuid", real))
        label = _text(row.get("label")) or links.get(("by-label", real))
        options = str(row.get("options") or "").split(",")
        out.append(Filesystem(Path(target), device, _text(row.get("fstype")), uuid.lower() if uuid else None,
                              label, "ro" in options))
    return out


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _links(disk_dir: Path) -> dict[tuple[str, str], str]:
    """(by-uuid|by-label, device real path) -> uuid or label, from udev's /dev/disk links."""
    out = {}
    for kind in ("by-uuid", "by-label"):
        try:
            entries = list((disk_dir / kind).iterdir())
        except OSError:
            continue
        for link in entries:
            name = link.name
            if kind == "by-label":  # udev escapes blanks and slashes as \x20, \x2f
                name = name.encode().decode("unicode_escape", "replace") if "\\x" in name else name
            out[(kind, os.path.realpath(link))] = name
    return out


def match(medium, fs: Filesystem) -> bool:
    """True when fs is medium: every identifier the policy gives (uuid, label) equals the filesystem's."""
    if medium.uuid is None and medium.label is None:
        return False
    if medium.uuid is not None and fs.uuid != medium.uuid.lower():
        return False
    return medium.label is None or fs.label == medium.label


def attached(media, found: list[Filesystem]) -> list[tuple[object, Filesystem]]:
    """(medium, filesystem) for each medium of `media` that is mounted (its first mount)."""
    out = []
    for medium in media:
        fs = next((f for f in found if match(medium, f)), None)
        if fs is not None:
            out.append((medium, fs))
    return out


def at(mountpoint: Path, found: list[Filesystem]) -> Filesystem | None:
    """The filesystem mounted exactly at mountpoint (symlinks resolved), or None."""
    want = os.path.realpath(mountpoint)
    return next((f for f in found if os.path.realpath(f.mountpoint) == want), None)
