"""Run the CLI in-process with --json: (exit code, parsed document), never a traceback."""

import json

from click.testing import CliRunner

from backupd.cli import main


def cli(*args):
    result = CliRunner().invoke(main, [*args, "--json"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.output)
