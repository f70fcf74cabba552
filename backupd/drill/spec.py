"""Drill specifications (``restore_tests/<name>.yaml``): what a drill restores and which probes judge it.

A policy target names its spec with ``drill: <name>``; a target without one gets ``default_spec()``
(sample drills monthly, full drills quarterly, verification only). The RTO is the target's, not the
spec's. Files are read with the policy loader's hostile-input protections (size cap, no aliases, anchors
or tags, bounded nesting) and validated by pydantic models that forbid unknown keys.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from backupd.config.loader import Config
from backupd.errors import ConfigError
from backupd.policy import loader
from backupd.policy.schema import Duration, check_name

_SIZE_RE = re.compile(r"^\s*([0-9]+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def parse_size(value: int | str) -> int:
    """``"2GiB"`` or an int of bytes -> bytes; ValueError says what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("a size must be an integer of bytes or a string like '512MiB'")
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"invalid size {value[:40]!r}: use <integer><unit>, unit B, KiB, MiB, GiB or TiB")
    return int(match.group(1)) * _UNITS[match.group(2)]


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]


def parse_percent(value: int | str) -> int:
    """``"150%"`` or an int -> percent of one CPU (150: one and a half CPUs); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("cpu must be a percentage of one CPU like '150%'")
    match = re.fullmatch(r"\s*([0-9]{1,6})\s*%?\s*", value) if isinstance(value, str) else None
    if isinstance(value, str) and not match:
        raise ValueError(f"invalid cpu {value[:40]!r}: use a percentage of one CPU like '150%'")
    return int(match.group(1)) if match else value


Percent = Annotated[int, BeforeValidator(parse_percent), Field(ge=10, le=100_000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Schedule(_Model):
    """How often each kind of drill is due (the daemon schedules; lint checks `full` is within a year)."""

    sample: Duration | None = Field(default=timedelta(days=30), description="null: never")
    full: Duration | None = Field(default=timedelta(days=90), description="null: never")


class Sandbox(_Model):
    """Where the drill restores (default state_dir/sandbox) and how much it may write there (max_bytes,
    watched during restore and probes), the free space it leaves on the filesystems of the sandbox and
    state_dir (min_free); the limits of every probe process (each runs confined, see docs/drills.md):
    memory per process (RLIMIT_AS), processes at once, largest file it may write (max_bytes); and of all
    of them together (the drill's cgroup): memory with swap, tasks, CPU."""

    dir: Path | None = None
    max_bytes: Size = Field(default=parse_size("20GiB"))
    min_free: Size = Field(default=parse_size("1GiB"))
    memory: Size = Field(default=parse_size("2GiB"), ge=64 << 20)
    processes: int = Field(default=256, ge=4, le=65536)
    memory_max: Size = Field(default=parse_size("4GiB"), ge=16 << 20)
    tasks_max: int = Field(default=1024, ge=8, le=1 << 22)
    cpu: Percent | None = Field(default=None, description="percent of one CPU; default: 90% of the host's CPUs")

    @field_validator("dir")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_absolute():
            raise ValueError("sandbox dir must be an absolute path")
        return v


class Sample(_Model):
    """Bounds of a sample drill: the stratified subset is at most this many files and bytes."""

    max_files: int = Field(default=200, ge=1, le=5000)
    max_bytes: Size = Field(default=parse_size("256MiB"))


class SqlCheck(_Model):
    """One SQL query returning one value. ``expect`` compares as text; ``min``/``max`` numerically;
    ``not_older_than`` (``rpo`` or a duration) treats the value as a Unix time that must be at least
    snapshot time minus that window. It runs read-only as a role that owns nothing the dump created, with
    search_path = pg_catalog: name tables with their schema (public.containers)."""

    name: str = Field(min_length=1, max_length=200)
    sql: str = Field(min_length=1, max_length=20_000)
    expect: str | int | None = None
    min: float | None = None
    max: float | None = None
    not_older_than: Literal["rpo"] | Duration | None = None
    enabled: bool = True


class TableExpectation(_Model):
    """What a restored table must hold, beyond equalling its backup-time count."""

    min_rows: int | None = Field(default=None, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    only_grows: bool = Field(default=False, description="never fewer rows than the previous generation had")


class PostgresProbe(_Model):
    """Load the restored dump (plain: psql; custom: pg_restore -j) into a throw-away cluster and compare it
    with the backup-time facts."""

    kind: Literal["postgres"]
    dump: str | None = Field(default=None, description="file name in the snapshot; default: the dump's")
    row_counts: bool = Field(default=True, description="every table's rows equal the backup-time count")
    tables: dict[str, TableExpectation] = Field(
        default_factory=dict, description="per-table expectations: name or schema.name -> min_rows, max_rows, "
                                          "only_grows")
    checks: list[SqlCheck] = Field(default_factory=list)
    timeout: Duration = Field(default=timedelta(hours=1))
    jobs: int | None = Field(default=None, ge=1, le=64,
                             description="parallel pg_restore jobs for a custom-format dump; default: CPU count")


class LogsProbe(_Model):
    """Each restored log file continues its previous generation (earlier content unchanged)."""

    kind: Literal["logs"]
    pattern: str = Field(default="*", description="fnmatch on the file name")


class ProgramsProbe(_Model):
    """Program files hash to the manifest; optionally run one restored program (argv[0] relative to the
    target's first source path) and match its output."""

    kind: Literal["programs"]
    command: list[str] | None = Field(default=None, min_length=1)
    expect_output: str | None = Field(default=None, description="regular expression")
    timeout: Duration = Field(default=timedelta(seconds=60))


class CommandProbe(_Model):
    """Any argv (no shell); ``{restore}`` and ``{sandbox}`` in arguments are replaced by those paths."""

    kind: Literal["command"]
    name: str = Field(default="command", min_length=1, max_length=100)
    command: list[str] = Field(min_length=1)
    expect_exit: int = 0
    expect_output: str | None = None
    timeout: Duration = Field(default=timedelta(minutes=5))


Probe = Annotated[Union[PostgresProbe, LogsProbe, ProgramsProbe, CommandProbe], Field(discriminator="kind")]


class DrillSpec(_Model):
    """One restore_tests file."""

    version: Literal[1]
    name: str | None = None
    description: str | None = None
    kind: Literal["sample", "full"] = "sample"
    schedule: Schedule = Field(default_factory=Schedule)
    sandbox: Sandbox = Field(default_factory=Sandbox)
    sample: Sample = Field(default_factory=Sample)
    probes: list[Probe] = Field(default_factory=list)

    _name = field_validator("name")(lambda v: v if v is None else check_name(v, "drill name"))


def default_spec() -> DrillSpec:
    """The spec of a target without `drill:`: verification against the manifest, default schedule."""
    return DrillSpec(version=1, name="default")


def spec_dir(cfg: Config) -> Path:
    """The restore_tests directory: the config's `restore_tests`, else beside the policies' directory."""
    if cfg.restore_tests is not None:
        return Path(cfg.restore_tests)
    return cfg.policy_files()[0].resolve().parent.parent / "restore_tests"


def load_spec(path: Path) -> DrillSpec:
    """Load and validate one spec file; ConfigError naming file, line and field otherwise."""
    loaded, spec = loader.load_model(path, DrillSpec)
    if spec is not None:
        return spec
    raise ConfigError("drill spec has errors:\n" + "\n".join(str(f) for f in loaded.findings[:20]))


def spec_for(cfg: Config, target) -> DrillSpec:
    """The spec a target names (restore_tests/<name>.yaml), or the default spec."""
    if not target.drill:
        return default_spec()
    try:
        name = check_name(target.drill, "drill name")
    except ValueError as exc:
        raise ConfigError(f"target {target.name}: {exc}") from None
    folder = spec_dir(cfg)
    for suffix in (".yaml", ".yml"):
        if (folder / f"{name}{suffix}").is_file():
            return load_spec(folder / f"{name}{suffix}")
    raise ConfigError(f"target {target.name}: drill spec {name!r} not found in {folder}")
