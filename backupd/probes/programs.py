"""Programs probe: restored executables hash to the manifest, and one of them runs in the sandbox."""

from __future__ import annotations

import os

from backupd.files.manifest import sha256_file
from backupd.probes.base import ProbeContext, ProbeResult
from backupd.probes.command import run_checked


def _executables(ctx: ProbeContext) -> list[dict]:
    return [e for e in ctx.restored if e.get("type") == "file" and int(e.get("mode") or "0", 8) & 0o111]


def run(probe, ctx: ProbeContext, result: ProbeResult) -> None:
    programs = _executables(ctx)
    bad = [e["path"] for e in programs
           if (local := ctx.regular(e["path"])) is None or sha256_file(str(local)) != e["sha256"]]
    result.details.update(programs=len(programs), mismatched=bad[:20])
    if bad:
        result.problems.append(f"{len(bad)} restored program(s) do not hash to the manifest")
    if probe.command is None:
        return
    paths = getattr(ctx.target.sources, "paths", None) or ["/"]
    home = ctx.local(paths[0])
    program = home / probe.command[0]
    if os.path.relpath(program, home).startswith(".."):
        result.problems.append(f"{probe.command[0]}: must lie inside the target's source path")
        return
    if not program.is_file():
        result.problems.append(f"{probe.command[0]} was not restored (a sample drill may have left it out)")
        return
    run_checked([str(program), *probe.command[1:]], ctx, result, timeout=probe.timeout.total_seconds(),
                expect_output=probe.expect_output, cwd=str(home))
