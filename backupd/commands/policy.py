"""`backupd policy lint` and `backupd policy schema`: registered on the main command group."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from backupd.commands.common import common


def register(main: click.Group) -> None:
    """Add the `policy` group to main."""

    @main.group()
    def policy() -> None:
        """Policy files: lint and schema."""

    @policy.command("lint")
    @click.argument("files", nargs=-1, type=click.Path(path_type=Path))
    @click.option("--strict", is_flag=True, help="Warnings count as findings (exit 1).")
    @click.option("--role", type=click.Choice(["daemon", "maintenance", "verifier"]), default=None,
                  help="Check every credential file this role reads (its unit must load them); other roles' "
                       "files are not checked.")
    @common
    def policy_lint(files, strict, role, config_path, as_json):
        """Check policy files against the schema and the port-sector guideline."""
        from backupd.actions import lint
        from backupd.render import results as report

        return report.lint_results(lint.run(files, config_path, role), strict, as_json)

    @policy.command("schema")
    @common
    def policy_schema(config_path, as_json):
        """Print the policy JSON Schema (for editors)."""
        from backupd.policy.schema import json_schema_text

        sys.stdout.write(json_schema_text())
