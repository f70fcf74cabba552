"""Every record's signature, on all cores: `evidence verify --all-signatures`.

verify.py authenticates the chain through the hash links and the signatures that matter; this module
checks each record's own signature as well, in chunks of lines over a process pool (Ed25519 checks
are CPU-bound: one process per core). A record is checked without a JSON round-trip
(record_format.signed_parts); one that fails is parsed in full to say whether it is damaged or
re-signed.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from backupd.evidence import keys, record_format

CHUNK = 4096
_KEYS: dict[bytes, Ed25519PublicKey] = {}  # per worker process: raw key -> key object


def check_all(lines, trusted: dict, skip: set) -> tuple[list, int]:
    """([(seq, message)], signatures checked) for every line (an iterable, read once) signed by a trusted
    key; verify.py turns the pairs into its Problems (this module sits below it).

    trusted: kid -> public key; skip: line numbers verify already judged (damaged, wrong key)."""
    raw = {kid: key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
           for kid, key in trusted.items()}
    workers = os.cpu_count() or 1
    found, checked = [], 0
    chunks = _chunks(lines)
    first = next(chunks, None)
    second = next(chunks, None)
    if first is None:
        return [], 0
    if second is None or workers == 1:  # one chunk: not worth a pool
        results = (check_chunk(start, chunk, raw) for start, chunk in _chain(first, second, chunks))
    else:
        results = _pooled(_chain(first, second, chunks), raw, workers)
    for count, problems in results:
        checked += count
        found += [(seq, message) for number, seq, message in problems if number not in skip]
    return found, checked


def _chain(first, second, rest):
    yield first
    if second is not None:
        yield second
    yield from rest


def _pooled(chunks, raw: dict, workers: int):
    """Results in order, at most two chunks per worker in flight (memory stays bounded)."""
    with ProcessPoolExecutor(workers) as pool:
        pending = deque()
        for start, chunk in chunks:
            pending.append(pool.submit(check_chunk, start, chunk, raw))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _chunks(lines):
    chunk, start = [], 1
    for number, line in enumerate(lines, 1):
        chunk.append(line)
        if len(chunk) == CHUNK:
            yield start, chunk
            chunk, start = [], number + 1
    if chunk:
        yield start, chunk


def check_chunk(start: int, lines: list[bytes], raw: dict) -> tuple[int, list[tuple]]:
    """(signatures checked, [(line number, seq, message)]) for one chunk (runs in a worker)."""
    pubs = {kid: _key(b) for kid, b in raw.items()}
    checked, problems = 0, []
    for number, line in enumerate(lines, start):
        parts = record_format.signed_parts(line)
        key = pubs.get(parts[0]) if parts else None
        if key is not None and keys.valid(key, parts[2], parts[1]):
            checked += 1
            continue
        try:
            rec = record_format.parse(line)
        except ValueError as exc:
            fields = record_format.scan(line)
            problems.append((number, fields[0] if fields else None, f"line {number} is damaged: {exc}"))
            continue
        key = pubs.get(rec["kid"])
        if key is None:
            continue  # not a trusted key: verify names it
        checked += 1
        if not record_format.signature_ok(rec, key):
            problems.append((number, rec["seq"], "signature does not verify: the record was changed after signing"))
    return checked, problems


def _key(raw: bytes) -> Ed25519PublicKey:
    if raw not in _KEYS:
        _KEYS[raw] = Ed25519PublicKey.from_public_bytes(raw)
    return _KEYS[raw]
