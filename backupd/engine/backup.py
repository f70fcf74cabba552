"""restic backup: argv building and summary parsing, for paths and for a streamed dump."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from backupd.engine import command, exitcodes, feature
from backupd.engine.repository import Repository
from backupd.errors import ConfigError
from backupd.process import execute

#: Benchmarks only (bench/year.py): "YYYY-MM-DD HH:MM:SS" dates every snapshot backupd writes (restic
#: --time) so a year of generations can be simulated in an hour. Read here and nowhere else; never set it
#: on a production host: backdated snapshots shift retention.
TIME_OVERRIDE = "BACKUPD_BACKUP_TIME"
_TIME_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@dataclass
class BackupSummary:
    """What restic reported for one backup run."""

    snapshot_id: str
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    data_added: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    duration: float = 0.0
    errors: list[str] = field(default_factory=list)


def tag_args(tags: dict[str, str] | list[str]) -> list[str]:
    """--tag arguments; dict entries become key=value tags."""
    items = [f"{k}={v}" for k, v in tags.items()] if isinstance(tags, dict) else list(tags)
    for tag in items:
        if "," in tag:
            raise ValueError(f"restic tags cannot contain commas: {tag!r}")
    return [a for t in items for a in ("--tag", t)]


def time_args() -> list[str]:
    """--time from BACKUPD_BACKUP_TIME (set by bench/year.py only); [] when unset."""
    value = os.environ.get(TIME_OVERRIDE, "")
    if not value:
        return []
    if not _TIME_FORMAT.fullmatch(value):
        raise ConfigError(f"{TIME_OVERRIDE}={value!r}: expected 'YYYY-MM-DD HH:MM:SS'")
    return ["--time", value]


def paths_argv(repo: Repository, paths: list[str], *, excludes: list[str], tags, host: str) -> list[str]:
    """argv for backing up paths."""
    args = ["--host", host, *tag_args(tags), *time_args()]
    for pattern in excludes:
        args += ["--exclude", pattern]
    return command.argv(repo, "backup", *args, "--", *paths)


def stdin_argv(repo: Repository, filename: str, *, tags, host: str) -> list[str]:
    """argv for backing up standard input as `filename`."""
    args = ["--host", host, *tag_args(tags), *time_args(), "--stdin", "--stdin-filename", filename]
    return command.argv(repo, "backup", *args)


def parse_output(stdout: bytes) -> BackupSummary | None:
    """The summary of a `restic backup --json` run, with the per-item errors it printed."""
    summary, errors = None, []
    for msg in execute.iter_json_lines(stdout):
        kind = msg.get("message_type")
        if kind == "summary":
            summary = msg
        elif kind == "error":
            item = msg.get("item") or ""
            err = msg.get("error", {})
            text = err.get("message") if isinstance(err, dict) else str(err)
            errors.append(f"{item}: {text}" if item else str(text))
    if summary is None:
        return None
    fields = {k: summary.get(k, 0) for k in (
        "files_new", "files_changed", "files_unmodified", "data_added",
        "total_files_processed", "total_bytes_processed")}
    return BackupSummary(snapshot_id=summary.get("snapshot_id", ""),
                         duration=float(summary.get("total_duration", 0.0)), errors=errors, **fields)


def _finish(done: execute.Completed, what: str, version: tuple[int, int, int] | None = None) -> BackupSummary:
    summary = parse_output(done.stdout)
    if done.returncode == 3 and not (done.timed_out or done.cancelled) or \
            (done.returncode == 0 and summary and summary.errors):
        items = summary.errors if summary else []
        raise exitcodes.SourceUnreadable(
            f"{what}: {len(items)} source item(s) could not be read; the backup is incomplete", items)
    exitcodes.classify(done, what, version)
    if summary is None or not summary.snapshot_id:
        raise exitcodes.ResticError(f"{what}: restic reported no snapshot")
    return summary


def progress_of(line: bytes) -> float | None:
    """percent_done (0..1) of a `restic backup --json` status line, else None."""
    if b'"status"' not in line:
        return None
    try:
        msg = json.loads(line)
        return float(msg.get("percent_done", 0.0)) if msg.get("message_type") == "status" else None
    except (ValueError, TypeError, AttributeError):
        return None


def backup_paths(repo: Repository, paths: list[str], *, excludes: list[str], tags, host: str,
                 timeout: float | None = command.DEFAULT_TIMEOUT,
                 cancel: execute.Cancel | None = None,
                 on_progress: Callable[[float], None] | None = None) -> BackupSummary:
    """Back up paths; SourceUnreadable when restic could not read some of them.
    on_progress receives restic's percent_done (0..1) as status lines arrive."""
    version = feature.detect(repo.restic_binary)  # the version gate of every restic call
    lines: list[bytes] = []

    def keep(line: bytes) -> None:
        done = progress_of(line)
        if done is None:
            lines.append(line)
        elif on_progress is not None:
            on_progress(done)

    done = execute.run(paths_argv(repo, paths, excludes=excludes, tags=tags, host=host),
                       repo.environment(), timeout=timeout, cancel=cancel,
                       on_stdout_line=keep, keep_stdout=False)
    done.stdout = b"".join(lines)
    return _finish(done, f"backup to {repo.name}", version)


def backup_stream(repo: Repository, producer: list[str], producer_env: execute.Environment,
                  filename: str, *, tags, host: str, tap=None,
                  timeout: float | None = command.DEFAULT_TIMEOUT,
                  cancel: execute.Cancel | None = None) -> tuple[BackupSummary | None, execute.PipelineResult]:
    """Stream a dump command into `restic backup --stdin`.

    Returns (summary, pipeline). summary is None when the producer failed: restic was then
    killed before end-of-input and wrote no snapshot (also when restic itself stalled:
    `pipeline.stalled` then says "consumer" and TimedOut is raised).
    """
    version = feature.detect(repo.restic_binary)
    result = execute.run_pipeline(
        producer, stdin_argv(repo, filename, tags=tags, host=host),
        producer_env=producer_env, consumer_env=repo.environment(), tap=tap,
        timeout=timeout, cancel=cancel,
    )
    prod = result.producer
    if result.broken and not (prod.timed_out or prod.cancelled):  # restic ended before the dump did
        exitcodes.classify(result.consumer, f"backup of {filename} to {repo.name}", version)
        raise exitcodes.ResticError(f"backup of {filename} to {repo.name}: restic stopped before the end of "
                                    "the dump; no snapshot was written")
    if result.stalled == "consumer":
        raise exitcodes.TimedOut(f"backup of {filename} to {repo.name}: restic stopped reading the dump "
                                 f"(storage stalled?) and was stopped after {result.consumer.limit or 0:.0f} s; "
                                 "no snapshot was written")
    if prod.returncode != 0 or prod.timed_out or prod.cancelled:
        return None, result
    result.consumer.stdout = b"\n".join(
        ln for ln in result.consumer.stdout.splitlines() if b'"message_type":"status"' not in ln)
    return _finish(result.consumer, f"backup of {filename} to {repo.name}", version), result
