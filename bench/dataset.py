"""A deterministic benchmark data set: many small config/log files, medium files, a few large ones.

The same seed and size always give the same bytes (seeded RNG, sorted generation order), so runs on
different days or machines back up identical data. A finished set is stamped in `<root>.json`
(beside the tree, so the stamp is not backed up) and reused when the stamp matches.

Mix for N GiB (restic 0.14 repositories do not compress, so compressibility only matters for later
restic versions):
- small: 8,000 x N text files of 200 B - 32 KiB (etc/<app>/*.conf, var/log/<service>/*.log);
- medium: 120 x N files of 256 KiB - 6 MiB, half CSV-like text exports, half random binary reports;
- large: 4 incompressible images (random bytes) that fill up the rest to exactly N GiB.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

GIB = 1 << 30
VERSION = 1
CHUNK = 8 << 20
APPS = ("tos-gate", "tos-yard", "tos-vessel", "edi-gateway", "nginx", "postgresql", "ocr-camera", "vpn")
WORDS = ("container", "bay", "row", "tier", "vessel", "gate", "yard", "crane", "reefer", "seal", "ok",
         "ERROR", "WARN", "INFO", "DEBUG", "timeout", "retry", "session", "user", "checksum", "berth")


def _corpus(rng: random.Random, size: int) -> bytes:
    """Log-like text lines to slice small and medium text files from."""
    lines, total = [], 0
    while total < size:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        line = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:" \
               f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} {rng.choice(APPS)}[{rng.randint(100, 9999)}]: " \
               f"{words} id={rng.getrandbits(40):010x}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def _slice(rng: random.Random, corpus: bytes, size: int) -> bytes:
    start = rng.randrange(0, len(corpus) - size)
    return corpus[start:start + size]


def _write_random(path: Path, rng: random.Random, size: int) -> None:
    """Incompressible bytes in chunks, so memory stays bounded for large files."""
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(CHUNK, left)
            out.write(rng.randbytes(n))
            left -= n


def _small_files(root: Path, rng: random.Random, corpus: bytes, count: int) -> int:
    written = 0
    for i in range(count):
        app = APPS[i % len(APPS)]
        size = min(int(rng.lognormvariate(8.3, 1.0)) + 200, 32 << 10)
        if i % 3 == 0:
            path = root / "etc" / app / f"conf.d/{i:05d}-{rng.choice(WORDS)}.conf"
        else:
            path = root / "var" / "log" / app / f"{2025 - i % 2}" / f"{app}-{i:05d}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_slice(rng, corpus, size))
        written += size
    return written


def _shuffled_lines(rng: random.Random, lines: list[bytes], size: int) -> bytes:
    """Text of `size` bytes from corpus lines in random order (unique content, no cross-file dedup)."""
    return b"".join(rng.choices(lines, k=size // 40 + 1))[:size]


def _medium_files(root: Path, rng: random.Random, corpus: bytes, count: int) -> int:
    lines = corpus.splitlines(keepends=True)
    written = 0
    for i in range(count):
        size = rng.randint(256 << 10, 6 << 20)
        if i % 2 == 0:
            path = root / "srv" / "exports" / f"yard-inventory-{i:04d}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_shuffled_lines(rng, lines, size))
        else:
            path = root / "srv" / "reports" / f"report-{i:04d}.pdf"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_random(path, rng, size)
        written += size
    return written


def _large_files(root: Path, rng: random.Random, total: int, count: int = 4) -> int:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        size = total // count + (total % count if i == count - 1 else 0)
        _write_random(root / "images" / f"vm-disk-{i}.img", rng, size)
    return total


def stamp_path(root: Path) -> Path:
    return root.with_name(root.name + ".json")


def generate(root: Path, size_gib: float = 1.0, seed: int = 2023_07_04) -> dict:
    """Create (or reuse) the data set under root; returns {files, bytes, seed, size_gib, reused}."""
    root = Path(root).resolve()
    wanted = {"version": VERSION, "seed": seed, "size_gib": size_gib}
    stamp = stamp_path(root)
    try:
        old = json.loads(stamp.read_text())
        if {k: old.get(k) for k in wanted} == wanted and root.is_dir():
            return {**old, "reused": True}
    except (OSError, ValueError):
        pass
    stamp.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    corpus = _corpus(rng, 4 << 20)
    target = int(size_gib * GIB)
    small_n, medium_n = max(int(8000 * size_gib), 50), max(int(120 * size_gib), 4)
    small = _small_files(root, rng, corpus, small_n)
    medium = _medium_files(root, rng, corpus, medium_n)
    large = _large_files(root, rng, max(target - small - medium, 4 << 20))
    info = {**wanted, "files": small_n + medium_n + 4, "bytes": small + medium + large,
            "small_bytes": small, "medium_bytes": medium, "large_bytes": large}
    stamp.write_text(json.dumps(info, indent=1) + "\n")
    return {**info, "reused": False}
