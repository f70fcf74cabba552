"""Removable media stand-ins for integration tests: small ext4 images with their own UUID and label, on loop
devices, mounted and unmounted like a USB disk that is attached and detached. Always cleaned up."""

from __future__ import annotations

import subprocess
import time
import uuid as uuid_mod
from dataclasses import dataclass, field
from pathlib import Path


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Medium:
    """One image file; attach() gives it a loop device and mounts it, detach() undoes both."""

    name: str
    image: Path
    mountpoint: Path
    uuid: str = field(default_factory=lambda: str(uuid_mod.uuid4()))
    device: str | None = None

    def create(self, size_mib: int = 64) -> "Medium":
        _run("truncate", "-s", f"{size_mib}M", str(self.image))
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-U", self.uuid, "-L", self.name, str(self.image))
        return self

    def attach(self) -> Path:
        self.device = _run("losetup", "-f", "--show", str(self.image))
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        _run("mount", self.device, str(self.mountpoint))
        return self.mountpoint

    def detach(self) -> None:
        """Unmount and free the loop device; the kernel may still hold it a moment after umount: retried."""
        if self.device is None:
            return
        subprocess.run(["umount", str(self.mountpoint)], capture_output=True)
        for _ in range(50):
            subprocess.run(["losetup", "-d", self.device], capture_output=True)
            if not _run("losetup", "-j", str(self.image)):
                break
            time.sleep(0.1)
        self.device = None

    def yaml(self) -> str:
        return f"      - {{name: {self.name}, uuid: {self.uuid}, label: {self.name}}}\n"


class MediaSet:
    """Media under one directory; a context manager that detaches every one at exit."""

    def __init__(self, base: Path):
        self.base, self.media = base, {}

    def add(self, name: str, size_mib: int = 64) -> Medium:
        medium = Medium(name, self.base / f"{name}.img", self.base / "mnt" / name).create(size_mib)
        self.media[name] = medium
        return medium

    def __getitem__(self, name: str) -> Medium:
        return self.media[name]

    def __enter__(self) -> "MediaSet":
        self.base.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        for medium in self.media.values():
            medium.detach()
