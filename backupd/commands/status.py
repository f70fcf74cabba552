"""`backupd status`: registered on the main command group."""

from __future__ import annotations

import click

from backupd.commands.common import common, load_config, load_policies


def register(main: click.Group) -> None:
    """Add this module's command to main."""

    @main.command()
    @common
    def status(config_path, as_json):
        """Per target: backup age vs RPO, verified RPO, last drill vs RTO, WORM state, check coverage; the
        evidence mirror's lag."""
        from backupd.actions import status as action
        from backupd.render import results as report

        cfg = load_config(config_path)
        policy_set = load_policies(cfg)
        rows = action.run(cfg, policy_set)
        return report.status_rows(rows, as_json, action.terminal(cfg, policy_set, rows), action.mirror_lag(cfg),
                                  action.foreign_objects(cfg), action.media_checks(cfg))
