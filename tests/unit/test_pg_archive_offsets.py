"""Data offsets written into a custom-format archive that was streamed (pg_restore -j then seeks to
each table instead of stepping over every row before it); anything unexpected leaves the file alone."""

from __future__ import annotations

import os

from backupd.sources import pgarchive


def _int(v: int) -> bytes:
    return bytes([1 if v < 0 else 0]) + abs(v).to_bytes(4, "little")


def _str(s: bytes | None) -> bytes:
    return _int(-1) if s is None else _int(len(s)) + s


def archive(tables: dict[int, list[bytes]], version=(1, 14), state: int = pgarchive.OFFSET_NOT_SET,
            desc: bytes = b"TABLE DATA") -> tuple[bytes, dict[int, int]]:
    """A pg_dump -Fc -Z0 archive as written to a pipe: header, table of contents, one block per table
    with one chunk per row. Returns it and where each table's block starts."""
    head = b"PGDMP" + bytes([*version, 0, 4, 8, 1]) + (bytes([0]) if version >= (1, 15) else _int(0))
    head += b"".join(_int(0) for _ in range(7)) + _str(b"tos") + _str(b"15.18") + _str(b"15.18")
    toc = _int(len(tables))
    for dump_id in tables:
        toc += _int(dump_id) + _int(1) + _str(b"0") + _str(b"0") + _str(b"t") + _str(desc) + _int(3)
        toc += b"".join(_str(b"") for _ in range(6 if version >= (1, 14) else 5)) + _str(b"postgres")
        toc += _str(b"false") + _str(b"12") + _str(None) + bytes([state]) + bytes(8)
    data, starts = b"", {}
    base = len(head) + len(toc)
    for dump_id, rows in tables.items():
        starts[dump_id] = base + len(data)
        chunks = b"".join(_int(len(r)) + r for r in rows)
        data += bytes([pgarchive.BLOCK_DATA]) + _int(dump_id) + chunks + _int(0)
    return head + toc + data, starts


def _offsets(raw: bytes) -> dict[int, tuple[int, int]]:
    r = pgarchive._Reader(raw)
    version = pgarchive._header(r)
    return {i: (state, int.from_bytes(raw[at + 1:at + 9], "little"))
            for i, _, at, state in pgarchive._entries(r, version)}


TABLES = {7: [b"1\tMSKU\n", b"2\tMSCU\n"] * 50, 8: [b"3\t\\N\n"], 9: [b"\x01 not a block\t7\n"] * 3}


def test_offsets_of_a_streamed_archive_point_at_each_tables_block(tmp_path):
    for version in pgarchive.VERSIONS:
        raw, starts = archive(TABLES, version)
        path = tmp_path / f"tos-{version[1]}.dump"
        path.write_bytes(raw)
        assert pgarchive.add_offsets(path) == 3
        patched = path.read_bytes()
        assert _offsets(patched) == {i: (pgarchive.OFFSET_SET, at) for i, at in starts.items()}
        assert len(patched) == len(raw) and patched[starts[7]:] == raw[starts[7]:], "only the offsets change"


def test_archives_with_offsets_large_objects_or_an_unknown_layout_are_left_alone(tmp_path):
    cases = [archive(TABLES, state=pgarchive.OFFSET_SET)[0], archive(TABLES, desc=b"BLOBS")[0],
             archive(TABLES, version=(1, 16))[0], archive(TABLES)[0][:200], b"-- plain SQL dump\n"]
    block = bytes([pgarchive.BLOCK_DATA])
    missing = archive(TABLES)[0].replace(block + _int(9), block + _int(5))  # table 9's block not found
    for n, raw in enumerate([*cases, missing]):
        path = tmp_path / f"case{n}.dump"
        path.write_bytes(raw)
        assert pgarchive.add_offsets(path) == 0, n
        assert path.read_bytes() == raw, n


def test_blocks_are_found_over_a_growing_prefix_and_only_the_tail_is_left(tmp_path):
    raw, starts = archive(TABLES)
    locator = pgarchive.Locator()
    # restic preallocates the file and fills it: what lies beyond the written prefix reads as zeros
    ends = [3, 40, starts[7] + 3, starts[8] - 2, starts[9] + 2]
    for end in ends:
        assert locator.advance(raw[:end] + bytes(len(raw) - end), end) is None, end
    assert locator.cursor > starts[8] and [at for _, at in locator.found] == [starts[7], starts[8]]
    path = tmp_path / "tos.dump"
    path.write_bytes(raw)
    assert pgarchive.add_offsets(path, locator) == 3  # resumed: the last block found in the tail
    assert _offsets(path.read_bytes()) == {i: (pgarchive.OFFSET_SET, at) for i, at in starts.items()}


def test_a_scan_of_another_file_writes_nothing(tmp_path):
    raw, starts = archive(TABLES)
    locator = pgarchive.Locator()
    assert locator.advance(raw, len(raw)) is not None
    other, _ = archive({7: [b"1\n"], 8: [b"2\n"], 9: [b"3\n"]})  # same entries, blocks elsewhere
    path = tmp_path / "other.dump"
    path.write_bytes(other)
    assert pgarchive.add_offsets(path, locator) == 0 and path.read_bytes() == other


def test_the_probe_finds_the_blocks_while_the_dump_is_still_being_written(tmp_path):
    import time

    from backupd.probes.postgres import MARGIN, EarlyOffsets

    big = [b"%d\tMSKU1234565\tin\n" % i for i in range(200_000)]  # 5 MiB
    raw, starts = archive({7: big, 8: big, 9: [b"3\t\\N\n"]})  # the third block MiBs after the second
    restore = tmp_path / "restore"
    (restore / "tmp").mkdir(parents=True)
    dump = restore / "tmp" / "tos.dump"
    with open(dump, "wb") as fh:
        fh.truncate(len(raw))  # as restic preallocates: the rest reads as a hole
        shows_holes = os.lseek(fh.fileno(), 0, os.SEEK_HOLE) < len(raw)
    watcher = EarlyOffsets(restore, None)
    written = starts[8] + MARGIN + 4096
    with open(dump, "r+b") as fh:
        fh.write(raw[:written])
        fh.flush()
        os.fsync(fh.fileno())
    deadline = time.monotonic() + 5
    while len(watcher.locator.found) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    early = [at for _, at in watcher.locator.found]
    if shows_holes:
        assert early == [starts[7], starts[8]], "found while the tail was unwritten, nothing beyond it"
    else:  # a file system that shows no holes: nothing is taken from the unwritten tail
        assert early == [], "no block is looked for where the file system cannot tell written from unwritten"
    with open(dump, "r+b") as fh:  # the rest arrives; restic ends
        fh.seek(written)
        fh.write(raw[written:])
    located = watcher.taken(dump)
    assert pgarchive.add_offsets(dump, located) == 3
    assert _offsets(dump.read_bytes()) == {i: (pgarchive.OFFSET_SET, at) for i, at in starts.items()}
    assert watcher.taken(restore / "other.dump") is None, "a scan of another file is not handed over"


def test_a_dump_reached_through_a_planted_directory_link_is_not_scanned(tmp_path):
    from backupd.probes.postgres import EarlyOffsets

    raw, _ = archive(TABLES)
    host = tmp_path / "host"
    host.mkdir()
    (host / "tos.dump").write_bytes(raw)  # a file outside the restored tree
    restore = tmp_path / "restore"
    restore.mkdir()
    (restore / "tmp").symlink_to(host)  # the snapshot's `tmp` is a link to it
    watcher = EarlyOffsets(restore, "/tmp/tos.dump")
    import time

    time.sleep(0.3)
    assert watcher.taken(host / "tos.dump") is None and watcher.failed
    assert watcher.locator.pending is None, "nothing of the host file was read"
