"""Clean restore points stay clean: every generation is judged against the last clean one, append-only
logs and append-only tables are checked at backup time, drills know what they restore.
Real restic, SeaweedFS and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from demo import tos_data, tos_files

pytestmark = pytest.mark.integration


def _target(name: str, root: Path, category: str = "container_data", extra: str = "") -> str:
    head = f"""  - name: {name}
    category: {category}
    owner: test
    sources: {{paths: ['{root}']}}
    frequency: 1h
    rto: 8h
    retention: {{keep_hourly: 24, keep_daily: 14, keep_weekly: 8}}
    destinations: [worm]
"""
    if category == "logs":
        head = head.replace("    owner: test\n", "    source: server\n    owner: test\n")
    return head + extra


def _tree(root: Path, files: int = 40, seed: int = 3) -> None:
    rng = random.Random(seed)
    for i in range(files):
        path = root / f"dir{i % 4}" / f"record-{i:03d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{i},{j},container-{rng.randrange(10**6):06d},ok\n" for j in range(60)))


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _encrypt(files: list[Path]) -> None:
    """What ransomware leaves: random bytes under the old name plus `.locked`."""
    for path in files:
        size = path.stat().st_size
        path.with_name(path.name + ".locked").write_bytes(os.urandom(size))
        path.unlink()


def _backup(setup, target: str) -> dict:
    run = setup.cli("backup", "--target", target, "--json")
    assert run.code == 0, run.stdout + run.stderr
    return run.doc["results"][0]


def _suspect(result: dict) -> bool:
    return bool(result["facts"].get("change", {}).get("suspicious"))


def test_encrypted_then_two_more_backups_restore_still_returns_the_pre_attack_bytes(policy, tmp_path):
    root = tmp_path / "tree"
    _tree(root)
    setup = policy(_target("tree", root), "t-clean-encrypt")
    for _ in range(3):
        assert not _suspect(_backup(setup, "tree"))
    before = _hashes(root)
    _encrypt(sorted(root.rglob("*.csv"))[:30])
    flagged = [_backup(setup, "tree") for _ in range(3)]  # the attack, then the hourly schedule goes on
    assert all(_suspect(r) for r in flagged), [r["facts"].get("change") for r in flagged]
    out = tmp_path / "restored"
    run = setup.cli("restore", "--target", "tree", "--to", str(out), "--json")
    assert run.code == 0, run.stdout
    assert _hashes(out / str(root).lstrip("/")) == before
    assert all(r["snapshot_id"][:8] in run.doc["explanation"] for r in flagged)


def test_drill_of_a_suspect_snapshot_exits_1_until_it_is_accepted(policy, tmp_path):
    root = tmp_path / "tree"
    _tree(root)
    setup = policy(_target("tree", root), "t-clean-accept")
    clean = _backup(setup, "tree")
    _encrypt(sorted(root.rglob("*.csv"))[:30])
    bad = _backup(setup, "tree")
    assert _suspect(bad)
    run = setup.cli("drill", "--target", "tree", "--full", "--snapshot", bad["snapshot_id"], "--json")
    assert run.code == 1, run.stdout
    drill = run.doc["drills"][0]
    assert drill["verdict"] == "SUSPECT" and drill["judgement"]["suspect"]
    default = setup.cli("drill", "--target", "tree", "--full", "--json").doc["drills"][0]
    assert default["snapshot_id"].startswith(clean["snapshot_id"]) and default["verdict"] == "PASS"

    run = setup.cli("accept", "--target", "tree", "--snapshot", bad["snapshot_id"][:8],
                    "--reason", "planned migration to encrypted archive format", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["was_flagged"] and run.doc["snapshots"]["worm"].startswith(bad["snapshot_id"])
    after = setup.cli("drill", "--target", "tree", "--full", "--snapshot", bad["snapshot_id"], "--json")
    assert after.code == 0 and after.doc["drills"][0]["verdict"] == "PASS"
    assert not _suspect(_backup(setup, "tree")), "the accepted generation is the new reference"


def test_slow_encryption_of_ten_percent_per_generation_is_flagged_by_the_third(policy, tmp_path):
    root = tmp_path / "tree"
    _tree(root, files=60)
    setup = policy(_target("tree", root), "t-clean-slow")
    for _ in range(3):
        assert not _suspect(_backup(setup, "tree"))
    before = _hashes(root)
    victims = sorted(root.rglob("*.csv"))
    random.Random(5).shuffle(victims)
    results = []
    for step in range(5):
        _encrypt(victims[step * 6:(step + 1) * 6])  # 10 % of the files each generation
        results.append(_backup(setup, "tree"))
    first_flag = next((i for i, r in enumerate(results) if _suspect(r)), None)
    assert first_flag is not None and first_flag <= 2, [r["facts"].get("change") for r in results]
    assert all(_suspect(r) for r in results[first_flag:])
    assert any("cumulative" in f for r in results for f in r["facts"]["change"]["flags"])
    out = tmp_path / "restored"
    run = setup.cli("restore", "--target", "tree", "--to", str(out), "--json")
    assert run.code == 0, run.stdout
    assert _hashes(out / str(root).lstrip("/")) == before, "the generations that carried the drift are skipped"


def test_a_log_edited_in_the_middle_is_flagged_at_backup_and_found_by_a_drill_two_generations_later(
        policy, tmp_path):
    root = tmp_path / "tos"
    tos_files.generate_tree(root, scale=0.2)
    logs = root / "logs" / "server"
    setup = policy(_target("srvlogs", logs, "logs", "    drill: logs\n"), "t-clean-logs",
                   restore_tests=f"'{Path(__file__).resolve().parents[2] / 'restore_tests'}'")
    assert not _suspect(_backup(setup, "srvlogs"))
    tos_files.advance_day(root, 1)
    assert not _suspect(_backup(setup, "srvlogs"))
    victim = max((p for p in logs.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    offset = len(data) // 2
    data[offset:offset + 20] = b"X" * 20  # the attacker's line, same size
    victim.write_bytes(bytes(data))
    edited = _backup(setup, "srvlogs")
    assert _suspect(edited)
    problem = edited["facts"]["append_only"]["problems"][0]
    assert problem["path"] == str(victim) and problem["kind"] == "edited"
    assert problem["offset"] <= offset < problem["offset"] + 4096
    later = []
    for day in (2, 3):
        tos_files.advance_day(root, day)
        later.append(_backup(setup, "srvlogs"))
    assert all(_suspect(r) for r in later), "the edit is still there, so the generations stay suspect"
    run = setup.cli("drill", "--target", "srvlogs", "--full", "--snapshot", later[-1]["snapshot_id"], "--json")
    assert run.code == 1
    logs_probe = next(p for p in run.doc["drills"][0]["probes"] if p["kind"] == "logs")
    assert str(victim) in logs_probe["details"]["edited"], logs_probe


def test_normal_log_rotation_and_growth_stay_clean(policy, tmp_path):
    root = tmp_path / "tos"
    tos_files.generate_tree(root, scale=0.2)
    logs = root / "logs"
    setup = policy(_target("alllogs", logs, "logs"), "t-clean-rotate")
    results = [_backup(setup, "alllogs")]
    for day in range(1, 7):
        tos_files.advance_day(root, day)
        results.append(_backup(setup, "alllogs"))
    assert not any(_suspect(r) for r in results), [r["facts"].get("append_only") for r in results]
    assert any(r["facts"]["append_only"]["checked"] for r in results[1:])


def test_an_append_only_table_losing_ten_percent_of_its_rows_is_flagged(policy, stack):
    tos_data.create_tos_database(stack.postgres, "tos_rows", containers=400)
    setup = policy("""  - name: db
    category: container_data
    owner: test
    sources:
      dump:
        kind: pg_dump
        database: tos_rows
        host: '${TOS_PGHOST}'
        port: '${TOS_PGPORT}'
        user: postgres
        row_loss_allowance: {container_events: 0, default: 50%}
    frequency: 1h
    rto: 4h
    retention: {keep_hourly: 24, keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
""", "t-clean-rows")
    assert not _suspect(_backup(setup, "db"))
    stack.postgres.psql("DELETE FROM container_events WHERE id % 10 = 0;", db="tos_rows")
    hit = _backup(setup, "db")
    assert _suspect(hit) and any("container_events" in f for f in hit["facts"]["change"]["flags"]), hit["facts"]
    again = _backup(setup, "db")
    assert _suspect(again), "still short of the last clean generation's rows"
