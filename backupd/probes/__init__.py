"""Application probes run on restored data in a drill sandbox: PostgreSQL (load the dump, compare with
backup-time facts, SQL checks), logs (each file continues its previous generation), programs (hashes and
an optional run), and any command. ``run(probe, ctx)`` dispatches on the probe's kind; ``prepare()``
starts, while restic still restores, what a probe needs before the data (a database server)."""

from __future__ import annotations

import time

from backupd.errors import BackupdError, DependencyError
from backupd.probes.base import ProbeContext, ProbeResult

__all__ = ["Prepared", "ProbeContext", "ProbeResult", "run"]


def _module(kind: str):
    from backupd.probes import command, logs, postgres, programs

    return {"postgres": postgres, "logs": logs, "programs": programs, "command": command}[kind]


class Prepared(dict):
    """What `prepare` started, by id(probe); leaving the `with` stops what is still running."""

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc) -> None:
        while self:
            self.popitem()[1].discard()


def prepare(probe_list, sandbox, jail) -> Prepared:
    """Start each probe's data-independent set-up in the background: the first PostgreSQL probe's
    throw-away cluster. What cannot start here (no PostgreSQL installed) the probe itself reports."""
    prepared = Prepared()
    first = next((p for p in probe_list if p.kind == "postgres"), None)
    if first is not None:
        try:
            prepared[id(first)] = _module("postgres").prepare(first, sandbox, jail)
        except (BackupdError, OSError):  # the probe meets it again and reports it
            pass
    return prepared


def run(probe, ctx: ProbeContext) -> ProbeResult:
    """Run one probe; a dependency failure, an error or a file it cannot read becomes a failed result,
    never an exception."""
    t0 = time.monotonic()
    result = ProbeResult(name=getattr(probe, "name", probe.kind), kind=probe.kind)
    try:
        _module(probe.kind).run(probe, ctx, result)
    except DependencyError as exc:
        result.status = "unavailable"
        result.problems.append(str(exc))
    except BackupdError as exc:
        result.problems.append(str(exc))
    except OSError as exc:  # restored data is untrusted: a file the snapshot lacks fails the probe
        result.problems.append(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    if result.problems and result.status == "ok":
        result.status = "failed"
    result.duration = round(time.monotonic() - t0, 3)
    return result
