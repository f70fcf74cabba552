"""The main job: a complete local demonstration of backupd on real components.

Brings up SeaweedFS (Object Lock, COMPLIANCE) and PostgreSQL on 127.0.0.1 with a sample terminal
(TOS database of 100,000 containers, programs, logs, control-system configs), lints the shipped
example policy, backs up every target through the real CLI, restores the TOS database and a
program tree with verification against the backup-time manifest, shows status, and proves that
the daemon's S3 identity cannot delete a locked backup object. Everything stops at the end.

    python -m demo.run [--workdir .demo] [--containers 100000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from demo import tos_data, tos_files, verifier
from demo.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
BACKUPD = [sys.executable, "-m", "backupd"]
#: Default COMPLIANCE retention of the demo bucket: the example policy's longest min_history (12w).
LOCK_DAYS = 84


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def cli(stack: LocalStack, config: Path, *args: str) -> int:
    """Run the real backupd CLI with the stack's environment; returns its exit code."""
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT)}
    print("$ backupd " + " ".join(args), flush=True)
    return subprocess.run(BACKUPD + list(args) + ["--config", str(config)], env=env, cwd=ROOT).returncode


def print_time_to_service(stack: LocalStack, config: Path) -> None:
    """The whole terminal's projected time to service (every target, restore order, parallel lanes)
    against the site's allowable cargo-handling downtime, from `backupd status --json`."""
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(BACKUPD + ["status", "--json", "--config", str(config)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    try:
        term = json.loads(done.stdout)["terminal"]
    except (ValueError, KeyError):
        print(f"whole terminal: no projection (status exited {done.returncode})")
        return
    allowed = term["allowable_downtime_seconds"]
    print(f"whole terminal: projected time to service {term['seconds'] / 60:.1f} min"
          + (f" against an allowable downtime of {allowed / 3600:.3g} h ({term['verdict']}, "
             f"{term['share']:.1%})" if allowed else " (the site sets no allowable_downtime)")
          + "; lanes: " + "; ".join(f"{ln['lane']}: {' -> '.join(ln['targets'])}" for ln in term["lanes"]))


def policies_with_auditor(out: Path) -> Path:
    """Copies of the example policies reading bucket settings with the auditor's keys: the demo's writer is
    confined to its own prefixes (deploy/seaweedfs), so it may not read the bucket's settings itself."""
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted((ROOT / "policies").glob("*.yaml")):
        (out / source.name).write_text(verifier.with_auditor(source.read_text()))
    return out


def prove_worm(stack: LocalStack) -> bool:
    """Try to delete a locked object version with the writer keys; True when refused."""
    writer = stack.seaweed.client("writer")
    versions = writer.list_object_versions(Bucket=stack.bucket, Prefix="restic/data/").get("Versions", [])
    if not versions:
        print("no data objects found to test")
        return False
    victim = versions[0]
    try:
        writer.delete_object(Bucket=stack.bucket, Key=victim["Key"], VersionId=victim["VersionId"])
    except Exception as exc:  # botocore ClientError: the refusal we want
        print(f"delete of locked version {victim['Key']} refused: {getattr(exc, 'response', {}).get('Error', {}).get('Code', exc)}")
        return True
    print(f"DANGER: the locked version {victim['Key']} was deleted: the endpoint is not WORM")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".demo")
    parser.add_argument("--containers", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    args = parser.parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    failures = 0
    t0 = time.monotonic()
    step(f"starting the local stack in {args.workdir} (SeaweedFS + PostgreSQL on 127.0.0.1)")
    with LocalStack(args.workdir, containers=args.containers, lock_days=LOCK_DAYS, confined_writer=True) as stack:
        print(f"S3 endpoint {stack.env['BACKUPD_S3_ENDPOINT']}, bucket {stack.bucket} (Object Lock COMPLIANCE); "
              f"TOS database: {', '.join(f'{k}={v}' for k, v in sorted(stack.facts.items()))}")
        config = stack.write_config(policies_with_auditor(args.workdir / "policies"))
        with open(config, "a", encoding="utf-8") as handle:
            handle.write("evidence: {mirror: worm-primary}\n")  # every record also goes to the WORM bucket
            handle.write(f"restore_tests: {json.dumps(str(ROOT / 'restore_tests'))}\n")  # the policies are copies
        step("lint the example policy")
        failures += cli(stack, config, "policy", "lint") != 0
        step("back up every target (restic, encrypted, to the Object-Lock bucket)")
        failures += cli(stack, config, "backup") != 0
        step("a day passes (new gate and yard events, logs appended and rotated), back up again: "
             "deduplicated, and the change against the previous generation is judged (no SUSPECT expected)")
        tos_files.advance_day(stack.tos_root, 1)
        tos_data.advance_day(stack.postgres, "tos", 1)
        failures += cli(stack, config, "backup") != 0
        step("restore the TOS database dump and verify it against the backup-time manifest")
        failures += cli(stack, config, "restore", "--target", "tos-db", "--to",
                        str(args.workdir / "restore" / "tos-db")) != 0
        step("restore the production programs and verify every file")
        failures += cli(stack, config, "restore", "--target", "tos-programs-production", "--to",
                        str(args.workdir / "restore" / "programs")) != 0
        step("full restore drills of every target: sandbox restore, verify every file, probes (the TOS "
             "database loaded into a throw-away PostgreSQL, programs run), RTO verdict")
        failures += cli(stack, config, "drill", "--full") != 0
        step("integrity: the next restic check --read-data-subset slice, with coverage ledger")
        failures += cli(stack, config, "check") != 0
        step("storage audit: versioning, Object Lock COMPLIANCE, retention >= min_history, lifecycle, a delete "
             "canary run with the canary identity (its refusal proven to be Object Lock's), writer probes, and the "
             f"writer's confinement (this host's writer may not write under another host's evidence prefix)")
        failures += cli(stack, config, "audit", "storage") != 0
        step("evidence for auditors: export a signed bundle, verify it offline")
        bundle = args.workdir / "evidence.tar.gz"
        failures += cli(stack, config, "evidence", "export", "--out", str(bundle)) != 0
        failures += cli(stack, config, "evidence", "verify", str(bundle)) != 0
        step("status")
        failures += cli(stack, config, "status") != 0
        print_time_to_service(stack, config)
        step("a verifier on a second identity (only the auditor's read-only keys, the repository password "
             "and its own signing key) drills the TOS database and the production programs, and may not back up")
        vconfig = verifier.write_config(stack, ROOT / "policies", args.workdir / "verifier")
        for target in ("tos-db", "tos-programs-production"):
            failures += cli(stack, vconfig, "drill", "--full", "--target", target) != 0
        failures += cli(stack, vconfig, "backup", "--target", "tos-db") != 2
        vstate = args.workdir / "verifier" / "state"
        failures += cli(stack, vconfig, "evidence", "verify", str(vstate / "evidence" / "ledger.jsonl"),
                        "--public-key", str(vstate / "keys" / "evidence-ed25519.pub")) != 0
        step("immutability: the daemon's own S3 identity tries to delete a locked backup object")
        failures += not prove_worm(stack)
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    step(f"done in {time.monotonic() - t0:.0f}s: {'all steps passed' if not failures else f'{failures} step(s) failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
