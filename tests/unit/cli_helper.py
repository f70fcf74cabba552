"""Run the CLI in-process with --json: (exit code, parsed document), never a traceback."""

import json

from click.testing import CliRunner

from backupd.cli import main


def cli(*args):
    result = CliRunner().invoke(main, [*args, "--json"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout)  # stderr may carry warnings


def write_secrets(folder):
    """A secrets_dir with the writer keys and repository password files a policy names (mode 0600)."""
    folder.mkdir(exist_ok=True)
    for name in ("s3-writer.env", "restic-password"):
        (folder / name).write_text("AWS_ACCESS_KEY_ID=x\nAWS_SECRET_ACCESS_KEY=y\n")
        (folder / name).chmod(0o600)
    return folder
