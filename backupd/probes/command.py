"""Command probe: run any argv (no shell) against the restored data, confined (backupd.process.sandbox): the
restored tree read-only, only the work directory writable, no network, no secrets; with a timeout and
bounded, scrubbed output."""

from __future__ import annotations

import re

from backupd.probes.base import ProbeContext, ProbeResult
from backupd.process.sandbox import limit_reached

TAIL = 2000


def run_checked(argv: list[str], ctx: ProbeContext, result: ProbeResult, *, timeout: float,
                expect_exit: int = 0, expect_output: str | None = None, cwd: str | None = None) -> None:
    """Run argv in the sandbox; record exit code and output tail; add a problem for a timeout, a broken
    limit, an exit code or output mismatch."""
    jail = ctx.confine()
    done = jail.run(argv, timeout=timeout, cwd=cwd)
    output = done.stdout.decode("utf-8", "replace")
    result.details.update(argv=argv, exit_code=done.returncode, stdout=output[-TAIL:],
                          stderr=done.stderr[-TAIL:], seconds=round(done.duration, 3),
                          output_truncated=done.truncated)
    if done.timed_out:
        result.problems.append(f"{argv[0]} timed out after {timeout:.0f}s (killed with every process it started)")
    elif done.returncode != expect_exit:
        hint = limit_reached(done, jail.limits)
        result.problems.append(f"{argv[0]} exited with {done.returncode}, expected {expect_exit}"
                               + (f": {hint}" if hint else ""))
    elif done.exceeded:  # a process it started was killed, whatever its own exit
        result.problems.append(f"{argv[0]}: {done.exceeded}")
    elif expect_output and not re.search(expect_output, output):
        result.problems.append(f"{argv[0]} output does not match {expect_output!r}")
    if done.timed_out and done.exceeded:
        result.problems.append(f"{argv[0]}: {done.exceeded}")


def run(probe, ctx: ProbeContext, result: ProbeResult) -> None:
    places = {"restore": str(ctx.restore_dir), "sandbox": str(ctx.confine().writable[0])}
    argv = [arg.replace("{restore}", places["restore"]).replace("{sandbox}", places["sandbox"])
            for arg in probe.command]
    run_checked(argv, ctx, result, timeout=probe.timeout.total_seconds(), expect_exit=probe.expect_exit,
                expect_output=probe.expect_output, cwd=places["sandbox"])
