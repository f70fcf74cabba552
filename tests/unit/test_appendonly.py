"""Append-only sources at backup time: growth and rotation pass, edits, truncation and removal are named."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from backupd.judgement import analytics, appendonly


def _write(root: Path, files: dict[str, bytes]) -> dict[str, list]:
    out = {}
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[str(path)] = [hashlib.sha256(data).hexdigest(), len(data)]
    return out


def _line(i: int) -> bytes:
    return f"2026-11-27T00:00:{i % 60:02d} gate-{i:05d} in\n".encode()


def _generation(tmp_path: Path, name: str, files: dict[str, bytes]) -> tuple[dict, dict]:
    current = _write(tmp_path / name, files)
    return current, appendonly.blocks_for(current, {}, {})


def test_growth_and_numbered_and_compressed_rotation_are_clean(tmp_path):
    old = b"".join(_line(i) for i in range(300))
    ref, blocks = _generation(tmp_path, "g", {"app.log": old, "app.log.1": b"older\n" * 50})
    (tmp_path / "g" / "app.log.1").rename(tmp_path / "g" / "app.log.2")
    with gzip.open(tmp_path / "g" / "app.log.1.gz", "wb") as handle:
        handle.write(old + _line(301))
    (tmp_path / "g" / "app.log").write_bytes(_line(302))
    now = {str(p): [hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size]
           for p in (tmp_path / "g").iterdir()}
    assert appendonly.check(ref, blocks, now) == []


def test_an_edit_in_the_middle_is_named_with_its_block_offset(tmp_path):
    data = bytearray(b"".join(_line(i) for i in range(2000)))
    ref, blocks = _generation(tmp_path, "g", {"app.log": bytes(data)})
    data[30000:30005] = b"XXXXX"
    now = _write(tmp_path / "g", {"app.log": bytes(data) + _line(2001)})
    (problem,) = appendonly.check(ref, blocks, now)
    assert problem.kind == "edited" and problem.offset == 28672 <= 30000 < problem.offset + appendonly.BLOCK
    assert "offset 28672" in problem.flag()


def test_a_shortened_or_vanished_live_log_is_a_problem_an_expired_rotated_one_is_not(tmp_path):
    ref, blocks = _generation(tmp_path, "g", {"app.log": _line(1) * 300, "auth.log": _line(2) * 10,
                                              "app.log.4": _line(3) * 10})
    (tmp_path / "g" / "auth.log").unlink()
    (tmp_path / "g" / "app.log.4").unlink()
    now = _write(tmp_path / "g", {"app.log": _line(1) * 100})
    problems = {Path(p.path).name: p for p in appendonly.check(ref, blocks, now)}
    assert set(problems) == {"app.log", "auth.log"}
    assert problems["app.log"].kind == "shortened" and problems["auth.log"].kind == "removed"


def test_dump_tables_are_judged_against_their_allowance():
    ref = {"public.container_events": 1000, "public.gate_transactions": 1000, "public.yard": 1000}
    now = {"public.container_events": 990, "public.gate_transactions": 950, "public.yard": 700}
    flags = analytics.judge_dump(now, ref, {"container_events": 0, "gate_transactions": 0.1}).flags
    assert len(flags) == 1 and "container_events" in flags[0]
    flags = analytics.judge_dump(now, ref, {"default": 0.2}).flags
    assert len(flags) == 1 and "public.yard" in flags[0]


def test_drift_is_judged_against_the_usual_drift_of_clean_generations():
    drift = analytics.Change(previous_files=100, changed=30, sampled=30, high_entropy_share=1.0)
    assert analytics.judge_drift(drift, [], "T0")
    usual = {"previous_files": 100, "changed": 40, "high_entropy_share": 0.9}
    assert not analytics.judge_drift(drift, [{"drift": usual}] * 3, "T0")
    assert analytics.clean_history([{"flags": ["x"]}, {"flags": []}]) == [{"flags": []}]


def test_a_one_file_target_rewritten_with_random_bytes_is_flagged_a_text_rewrite_is_not():
    encrypted = analytics.Change(previous_files=1, changed=1, sampled=1, high_entropy_share=1.0)
    assert analytics.judge(encrypted, []).suspicious
    rewritten = analytics.Change(previous_files=1, changed=1, sampled=1, high_entropy_share=0.0)
    assert not analytics.judge(rewritten, []).suspicious


def test_a_growing_log_is_read_once_for_its_check_and_its_next_block_digests(tmp_path, monkeypatch):
    ref, blocks = _generation(tmp_path, "g", {"app.log": _line(1) * 500})
    now = _write(tmp_path / "g", {"app.log": _line(1) * 500 + _line(2) * 10})
    reads = []
    real = appendonly.scan
    monkeypatch.setattr(appendonly, "scan", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    scanned: dict[str, str] = {}
    assert appendonly.check(ref, blocks, now, scanned) == []
    digests = appendonly.blocks_for(now, ref, blocks, scanned)
    assert len(reads) == 1
    assert digests == appendonly.blocks_for(now, {}, {})  # the same digests a fresh read gives
