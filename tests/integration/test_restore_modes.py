"""restore --to on real restic and SeaweedFS, as root: a setuid-root program planted in the backed-up tree
does not land armed in the operator's directory."""

from __future__ import annotations

import os
import stat

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.restic]


@pytest.mark.skipif(os.geteuid() != 0, reason="restores setuid-root files as root")
def test_restore_clears_a_planted_setuid_root_bit_unless_kept(policy, tmp_path):
    src = tmp_path / "programs"
    src.mkdir()
    planted = src / "helper"
    planted.write_text("#!/bin/sh\nid\n")
    planted.chmod(0o4755)
    setup = policy(f"""  - name: plc
    category: control_system
    owner: test
    sources: {{paths: ['{src}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
""", "t-setuid")
    assert setup.cli("backup", "--target", "plc", "--json").code == 0
    out = tmp_path / "new" / "r"
    run = setup.cli("restore", "--target", "plc", "--to", str(out), "--json")
    restored = out / str(planted).lstrip("/")
    assert run.code == 0, run.stdout + run.stderr
    assert stat.S_IMODE(os.lstat(restored).st_mode) == 0o755
    assert run.doc["modes"]["setid_cleared"] == 1
    assert any(str(restored) in w and "cleared" in w for w in run.doc["warnings"]), run.doc["warnings"]
    assert stat.S_IMODE(os.lstat(out).st_mode) == 0o700 == stat.S_IMODE(os.lstat(out.parent).st_mode)

    kept = tmp_path / "kept"
    run = setup.cli("restore", "--target", "plc", "--to", str(kept), "--keep-setuid")
    assert run.code == 0, run.stdout + run.stderr
    assert stat.S_IMODE(os.lstat(kept / str(planted).lstrip("/")).st_mode) == 0o4755
    assert "kept setuid/setgid" in run.stderr and str(planted.name) in run.stderr
