"""`backupd runbook`: registered on the main command group."""

from __future__ import annotations

from pathlib import Path

import click

from backupd import output
from backupd.commands.common import common, load_config, load_policies


def register(main: click.Group) -> None:
    """Add this module's command to main."""

    @main.command()
    @click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
                  help="Directory for runbook.md and runbook.html (created if missing).")
    @common
    def runbook(out_dir, config_path, as_json):
        """Write the recovery runbook (Japanese/English, Markdown and HTML) from policies and drill times."""
        from backupd.actions import runbook as action
        from backupd.render.runbook import last_drill_label

        cfg = load_config(config_path)
        doc = action.write(cfg, load_policies(cfg), out_dir)
        if as_json:
            output.emit_json({"ok": True, "exit_code": 0, **doc})
            return 0
        output.table("recovery runbook", ["#", "target", "category", "owner", "RTO", "expected", "last drill"],
                     [[t["order"], t["name"], t["category"], t["owner"], t["rto"] or "-", t["expected"]["en"],
                       last_drill_label(t)] for t in doc["targets"]])
        for name, path in doc["files"].items():
            output.note(f"wrote {path} (sha256 {doc['sha256'][name]})")
        return 0
