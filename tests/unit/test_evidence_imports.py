"""What recording evidence loads: nothing of S3 without a mirror, never the policy linter (issue: a record per
backup used to import boto3 and lint every policy again)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.integration.conftest import ROOT

POLICY = """version: 1
site: {name: T, port: other}
destinations:
  worm: {kind: s3, endpoint: 'http://127.0.0.1:9', bucket: backups, path: p, object_lock: true,
         credentials_file: s3.env, password_file: pw}
targets: []
"""


def _run(tmp_path, body: str) -> str:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "s3.env").write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")
    (tmp_path / "secrets" / "pw").write_text("x\n")
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from backupd.config.loader import Config
        cfg = Config(path=None, policies=[{str(tmp_path / 'policies' / '*.yaml')!r}],
                     state_dir=Path({str(tmp_path / 'state')!r}), secrets_dir=Path({str(tmp_path / 'secrets')!r}),
                     host="tos-01")
    """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_record_without_a_mirror_loads_nothing_of_s3(tmp_path):
    out = _run(tmp_path, """
        from backupd import evidence
        evidence.record(cfg, "backup", {"target": "t"})
        print(sorted(m for m in ("boto3", "botocore", "backupd.evidence.mirror", "backupd.policy.lint")
                     if m in sys.modules))
    """)
    assert out.strip() == "[]"


def test_the_mirror_destination_is_found_without_the_policy_linter(tmp_path):
    out = _run(tmp_path, """
        from backupd.evidence import mirror
        print(mirror.destination(cfg, "worm").bucket, "backupd.policy.lint" in sys.modules)
        cfg.destinations = {"worm": "from the loaded set"}
        print(mirror.destination(cfg, "worm"))
    """)
    assert out.splitlines() == ["backups False", "from the loaded set"]
