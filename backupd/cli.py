"""Command line: the top-level group only; it assembles the command groups of backupd/commands/, where each
command parses its arguments, calls one action and maps the outcome to the exit-code contract.

Exit codes: 0 success, 1 finding, 2 usage/configuration, 3 dependency unavailable.
`--json` prints one JSON document on stdout. No traceback ever reaches the user for bad input.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

from backupd.state import statedir
from backupd.commands import (backups, daemon, drill, evidence, incident, media, policy, runbook, setup, status,
                              storage)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="backupd")
def main() -> None:
    """backupd: keeps a port TOS recoverable with restic and Object-Lock storage, and proves it."""
    os.umask(statedir.UMASK)  # everything backupd and its children create is private (state, manifests, caches)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


for _group in (policy, backups, status, storage, drill, evidence, daemon, incident, runbook, setup, media):
    _group.register(main)

def run() -> None:
    """The `backupd` program: main(), then exit without tearing the interpreter down module by module (tens
    of milliseconds of every command with pydantic, boto3 and cryptography loaded) once output is flushed
    and no other thread is left to finish; otherwise the normal exit."""
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else None
        if code is not None and not any(t is not threading.main_thread() and not t.daemon
                                        for t in threading.enumerate()):
            logging.shutdown()
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError):
                raise exc from None  # output could not be written: the normal exit reports it
            os._exit(code)
        raise


if __name__ == "__main__":  # pragma: no cover
    run()
