"""`backupd daemon`: registered on the main command group."""

from __future__ import annotations

import click

from backupd.commands.common import common, load_config, load_policies


def register(main: click.Group) -> None:
    """Add this module's commands to main."""

    @main.command("daemon")
    @click.option("--once", is_flag=True,
                  help="Run the backups that are due (catch-up in RPO order), then exit.")
    @common
    def daemon(once, config_path, as_json):
        """Foreground service for systemd (Type=notify): scheduled backups, alerts, metrics.

        SIGTERM cancels running backups cleanly and exits; SIGHUP reloads the policies (kept
        unchanged when the new ones do not lint)."""
        from backupd.daemon import service, settings
        from backupd.daemon.signals import Signals

        cfg = load_config(config_path, writes="daemon")
        opts = (settings.daemon(cfg), settings.notify(cfg), settings.metrics(cfg))
        signals = Signals()
        signals.install()
        svc = service.Service(cfg, lambda: load_policies(cfg), *opts, once=once, signals=signals)
        code = svc.run()
        if as_json:
            from backupd import output

            output.emit_json({"ok": code == 0, "exit_code": code, "failures": svc.failures,
                              "jobs": {n: vars(j) for n, j in svc.jobs.items()}})
        return code
