"""`backupd check` and `backupd drill`: registered on the main command group."""

from __future__ import annotations

import click

from backupd import output
from backupd.commands.common import common, load_config, load_policies, snapshot_arg, stopped
from backupd.process import execute


def register(main: click.Group) -> None:
    """Add this module's commands to main."""

    @main.command()
    @click.option("--target", "target_name", default=None, help="Drill only this target.")
    @click.option("--full", is_flag=True, help="Restore everything (default: the spec's kind, usually a sample).")
    @click.option("--snapshot", "snapshot_id", default=None, help="Snapshot id (default: newest complete).")
    @click.option("--due", is_flag=True, help="Only drills the restore_tests schedules want now (a full one "
                  "when its period passed without a passed full drill, else a sample); for timers.")
    @click.option("--destination", default=None, help="Destination or medium to drill from (a medium: the targets "
                  "with offline copies on it); default: first destination, an attached medium when S3 is down.")
    @common
    def drill(target_name, full, snapshot_id, due, destination, config_path, as_json):
        """Restore into a sandbox, verify against the manifest, probe, judge against the RTO."""
        from backupd.actions import drill as action
        from backupd.errors import ConfigError
        from backupd.render import results as report

        if due and (full or snapshot_id):
            raise ConfigError("--due chooses the kind and the snapshot itself; drop --full/--snapshot")
        snapshot_id = snapshot_arg(snapshot_id)
        cfg = load_config(config_path)
        policy_set = load_policies(cfg)
        with output.busy("restore drill running (restore, verify, probes)", enabled=not as_json):
            reports = action.run(cfg, policy_set, target_name, full=full, snapshot_id=snapshot_id, due=due,
                                 destination=destination)
        return report.drill_results(reports, as_json)

    @main.command()
    @click.option("--days", default=30, type=click.IntRange(1, 256), show_default=True,
                  help="Every pack is read at least once within this many days (one run per day).")
    @click.option("--daily-budget", default="5GiB", show_default=True,
                  help="Bytes one run may read, e.g. 5GiB; more slices are used when the repository is bigger.")
    @common
    def check(days, daily_budget, config_path, as_json):
        """Read the next slice of every destination's packs (restic check --read-data-subset=k/n)."""
        from backupd.actions import check as action
        from backupd.drill.spec import parse_size
        from backupd.errors import ConfigError
        from backupd.render import results as report

        try:
            budget = parse_size(daily_budget)
        except ValueError as exc:
            raise ConfigError(f"--daily-budget: {exc}") from None
        cfg = load_config(config_path)
        with execute.cancel_on_signals() as stop:
            results = action.run(cfg, load_policies(cfg), days=days, daily_budget=budget, cancel=stop)
        return report.check_results(results, as_json, stopped(stop))
