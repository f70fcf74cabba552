"""Change analytics: ransomware-like generations are flagged, ordinary change is not."""

import os

from backupd.judgement import analytics


def _files(tmp_path, n, content):
    paths = {}
    for i in range(n):
        p = tmp_path / f"f{i}.dat"
        p.write_bytes(content(i))
        paths[str(p)] = (f"h{i}", p.stat().st_size)
    return paths


def test_entropy_separates_text_from_random():
    assert analytics.entropy(b"gate-in container TCLU1234567 at 06:30\n" * 20) < 5.5
    assert analytics.entropy(os.urandom(300)) > analytics.HIGH_ENTROPY


def test_mass_rewrite_with_random_bytes_is_flagged(tmp_path):
    current = _files(tmp_path, 30, lambda i: os.urandom(2000))
    previous = {p: "old" for p in current}
    change = analytics.judge(analytics.compare(previous, current), baseline=[])
    assert change.suspicious and "mass encryption" in change.flags[0]


def test_text_appends_are_not_flagged(tmp_path):
    current = _files(tmp_path, 30, lambda i: b"2026-11-20 gate transaction ok\n" * (50 + i))
    previous = {p: "old" for p in current}
    assert not analytics.judge(analytics.compare(previous, current), baseline=[]).suspicious


def test_a_target_that_always_rewrites_compressed_data_is_not_flagged(tmp_path):
    current = _files(tmp_path, 30, lambda i: os.urandom(2000))
    previous = {p: "old" for p in current}
    usual = {"previous_files": 30, "changed": 30, "renamed_extensions": 0, "high_entropy_share": 1.0}
    assert not analytics.judge(analytics.compare(previous, current), baseline=[usual] * 3).suspicious


def test_mass_deletion_and_renamed_extensions(tmp_path):
    previous = {f"/d/f{i}.csv": "h" for i in range(40)}
    current = {f"/d/f{i}.csv.locked": ("x", 10) for i in range(25)}
    change = analytics.judge(analytics.compare(previous, current), baseline=[])
    assert any("renamed" in f for f in change.flags) and any("mass deletion" in f for f in change.flags)


def test_first_generation_has_nothing_to_compare():
    assert not analytics.judge(analytics.compare({}, {"/a": ("h", 1)}), []).suspicious


def test_dump_row_loss():
    assert analytics.judge_dump({"public.events": 10}, {"public.events": 1000}).suspicious
    assert not analytics.judge_dump({"public.events": 1010}, {"public.events": 1000}).suspicious
    assert analytics.judge_dump({}, {"public.events": 1000}).suspicious


def test_a_small_target_encrypted_whole_is_flagged(tmp_path):
    current = _files(tmp_path, 4, lambda i: os.urandom(5000))
    change = analytics.judge(analytics.compare({p: "old" for p in current}, current), baseline=[])
    assert change.suspicious
