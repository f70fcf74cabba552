"""What every command shares: --config/--json options, error-to-exit-code mapping, loading."""

from __future__ import annotations

import functools
import re
import signal
import socket
import sys
from pathlib import Path

import click

from backupd import output
from backupd.config import loader as config_mod
from backupd.errors import EXIT_OK, BackupdError, ConfigError
from backupd.state import statedir


def snapshot_arg(value: str | None) -> str | None:
    """A --snapshot value as restic will receive it: 1 to 64 hex digits, so it is never read as an option."""
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{1,64}", value):
        raise ConfigError(f"--snapshot {value[:70]!r}: a snapshot id is 1 to 64 hex digits")
    return value.lower() if value is not None else None


def common(fn):
    """--config and --json on every command."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(fn)
    fn = click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
                      help="backupd.yaml (default $BACKUPD_CONFIG or /etc/backupd/backupd.yaml).")(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = kwargs.get("as_json", False)
        try:
            code = fn(*args, **kwargs)
        except BackupdError as exc:
            _fail(str(exc), exc.exit_code, as_json)
        except KeyboardInterrupt:  # Ctrl-C: the shell's convention, 128 + SIGINT
            _fail("interrupted", 128 + signal.SIGINT, as_json)
        sys.exit(code or EXIT_OK)

    return wrapper


def stopped(cancel) -> int | None:
    """128 + signal when a SIGTERM/SIGINT cancelled the command (execute.cancel_on_signals), else None."""
    if cancel.signum is None:
        return None
    output.error(f"stopped by {signal.Signals(cancel.signum).name}: running children were stopped, "
                 "what finished is recorded")
    return 128 + cancel.signum


def _fail(message: str, code: int, as_json: bool) -> None:
    if as_json:
        output.emit_json({"ok": False, "error": message, "exit_code": code})
    else:
        output.error(message)
    sys.exit(code)


#: what the maintenance role (backupd-maintenance.service) runs; it holds no writer keys for anything else
MAINTENANCE_COMMANDS = ("forget", "prune", "extend-locks")


def load_config(config_path: Path | None, writes: str | None = None):
    """The config; `writes` names a command that writes to storage, which the verifier role refuses (exit 2)."""
    cfg = config_mod.load(config_path)
    if writes and cfg.verifier:  # refused before anything runs or is created
        raise ConfigError(f"{writes} refused: {cfg.path} has role: verifier (read-only keys); writing "
                          "commands run on the backup host with its own config")
    if writes and cfg.maintenance and writes not in MAINTENANCE_COMMANDS:
        raise ConfigError(f"{writes} refused: {cfg.path} has role: maintenance (the maintainer's keys only: "
                          f"{', '.join(MAINTENANCE_COMMANDS)}); run it with the backup host's config")
    for warning in statedir.ensure_private(cfg.state_dir):  # private state, checked before anything runs
        output.note(f"warning: {warning}")
    return cfg


def load_policies(cfg):
    """The lint-clean policy set; fixes the host name (config, else policy site, else hostname). A verifier
    is named by its config or hostname and reads the snapshots of `hosts` (default: the policy site.host)."""
    from backupd.policy.lint import load_policy_set

    policy_set = load_policy_set(cfg.policy_files(), cfg.secrets_dir, held=cfg.secrets_held())
    cfg.destinations = policy_set.destinations
    for gap in (w for w in policy_set.warnings if w.gap):  # reported, never a reason to stop backing up
        output.note(f"warning: guideline gap: {gap}")
    site = next((p.policy.site for p in policy_set.policies if p.policy and p.policy.site), None)
    site_host = site.host if site else None
    if cfg.verifier:
        cfg.host = cfg.host or socket.gethostname()
        cfg.hosts = cfg.hosts or ([site_host] if site_host else [])
        if not cfg.hosts:
            raise ConfigError(f"{cfg.path}: role verifier needs `hosts:` (the backup hosts whose snapshots it "
                              "reads) or site.host in the policy")
        if cfg.host in cfg.hosts:  # its ledger would collide with the backup host's under evidence/<host>/
            raise ConfigError(f"{cfg.path}: host: the verifier's own name must differ from the backup hosts it "
                              f"verifies ({', '.join(cfg.hosts)}); set host: to this machine's name")
        return policy_set
    cfg.host = cfg.host or site_host or socket.gethostname()
    return policy_set
