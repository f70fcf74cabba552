"""Drills of a non-root daemon in its probe user namespace, so no probe process runs as the daemon's uid.

backupd.service sets BACKUPD_PROBE_USERNS to a user namespace its ExecStartPre pins as root
(deploy/systemd/probe-userns.sh): 0 is the daemon's user, 1..65536 its subordinate ids (/etc/subuid).
The daemon cannot enter it itself (it would lose the CAP_DAC_READ_SEARCH its backups need, and a
threaded process may not), so each scheduled drill runs as its own `backupd drill` process inside it
(nsenter). There backupd is root over the daemon's own files only, takes the sandbox's root layout and
drops every probe process to uid 65530: on the host a subordinate id that owns no key or credential.
That process records state and evidence as a drill by hand does; its JSON reports come back here.
"""

from __future__ import annotations

import json
import os
import sys

from backupd.process import execute

ENV = "BACKUPD_PROBE_USERNS"
NSENTER = "nsenter"
#: The reports of a drill with probe output (64 KiB per stream and probe) fit well below this.
MAX_OUTPUT = 64 << 20
#: What the drill process needs of the daemon's environment (systemd's credentials, the config).
PASSED = ("BACKUPD_CONFIG", "CREDENTIALS_DIRECTORY")


def namespace() -> str | None:
    """The pinned namespace drills run in: set for a non-root daemon by its unit, else None."""
    return (os.environ.get(ENV) or None) if os.geteuid() != 0 else None


def argv(cfg, target_name: str, full: bool, userns: str) -> list[str]:
    """`backupd drill` for one target, with the daemon's interpreter and config, inside `userns`."""
    command = [NSENTER, f"--user={userns}", "--", sys.executable, "-P", "-m", "backupd", "drill",  # -P: never the cwd
               "--target", target_name, "--json"]
    if full:
        command.append("--full")
    if cfg.path is not None:
        command += ["--config", str(cfg.path)]
    return command


def run(cfg, target_name: str, *, full: bool, userns: str, cancel: execute.Cancel | None = None) -> list[dict]:
    """Drill one target inside `userns`; its reports, or one `unavailable` report saying why none came."""
    unpinned = _placeholder(userns)
    if unpinned:
        return [_unavailable(target_name, full, userns, unpinned)]
    plain = {k: os.environ[k] for k in PASSED if k in os.environ}
    done = execute.run(argv(cfg, target_name, full, userns), execute.Environment(plain=plain), cancel=cancel,
                       max_output=MAX_OUTPUT)
    try:
        doc = json.loads(done.stdout)
        if isinstance(doc.get("drills"), list):
            return doc["drills"]
        why = str(doc.get("error") or doc)
    except (ValueError, AttributeError):
        # a drill stopped with the daemon may die mid-import: its traceback says nothing the operator needs
        why = "cancelled" if done.cancelled else \
            done.stderr.strip()[-500:] or f"exit code {done.returncode}, no report"
    return [_unavailable(target_name, full, userns, why)]


def _unavailable(target_name: str, full: bool, userns: str, why: str) -> dict:
    return {"target": target_name, "kind": "full" if full else "sample", "status": "unavailable",
            "reason": f"drill in the probe user namespace {userns} failed: {why[:500]}"}


def _placeholder(userns: str) -> str | None:
    """Why `userns` is a plain file rather than a namespace (nsenter would only say "Invalid argument"),
    else None (a missing path is left to nsenter, which names it)."""
    try:
        if os.stat(userns).st_dev == os.stat("/proc/self/ns/user").st_dev:
            return None
    except OSError:
        return None
    return ("no namespace is pinned there, only the placeholder file (probe-userns.sh pin mounted it in "
            "another mount namespace, or not at all)")
