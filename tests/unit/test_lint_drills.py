"""policy lint: every target needs a full restore drill at least yearly (guideline 2.7.2)."""

import shutil
from pathlib import Path

from click.testing import CliRunner

from backupd.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _site(tmp_path, full: str):
    for sub in ("policies", "restore_tests", "secrets"):
        (tmp_path / sub).mkdir()
    shutil.copy(ROOT / "policies" / "terminal.yaml", tmp_path / "policies")
    for spec in (ROOT / "restore_tests").glob("*.yaml"):
        shutil.copy(spec, tmp_path / "restore_tests")
    spec = tmp_path / "restore_tests" / "tos-db.yaml"
    spec.write_text(spec.read_text().replace("full: 30d", f"full: {full}"))
    for name in ("s3-writer.env", "restic-password"):
        (tmp_path / "secrets" / name).write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")
        (tmp_path / "secrets" / name).chmod(0o600)
    (tmp_path / "backupd.yaml").write_text("policies: [policies/*.yaml]\nsecrets_dir: secrets\nrestore_tests: restore_tests\n")
    return tmp_path / "backupd.yaml"


def test_shipped_drill_specs_satisfy_the_yearly_rule(tmp_path):
    result = CliRunner().invoke(main, ["policy", "lint", "--config", str(_site(tmp_path, "30d"))])
    assert result.exit_code == 0, result.output


def test_a_full_drill_rarer_than_yearly_is_an_error(tmp_path):
    result = CliRunner().invoke(main, ["policy", "lint", "--config", str(_site(tmp_path, "400d"))])
    assert result.exit_code == 1
    assert "targets[0].drill: error: drill tos-db schedules no full restore drill within 12 months" in result.output


def test_a_missing_drill_spec_is_an_error(tmp_path):
    config = _site(tmp_path, "30d")
    (tmp_path / "restore_tests" / "tos-db.yaml").unlink()
    result = CliRunner().invoke(main, ["policy", "lint", "--config", str(config)])
    assert result.exit_code == 1 and "targets[0].drill" in result.output
