"""The policy schema: the single source of truth for ``policies/*.yaml``.

Input: plain Python data (after ``${VAR}`` interpolation, see loader.py). Output: validated pydantic models.
Every model forbids unknown keys. Relative ``credentials_file``/``password_file`` paths are resolved against
``secrets_dir`` when it is passed as validation context (``model_validate(data, context={"secrets_dir": p})``).
``python -m backupd.policy.schema > backupd/policy/policy.schema.json`` regenerates the JSON Schema.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from backupd.policy.durations import DURATION_PATTERN, format_duration, parse_duration

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_MAX = 64
PORTS = ("keihin", "nagoya", "osaka", "kobe", "hakata", "other")
SPECIFIC_PORTS = frozenset(PORTS[:5])
CATEGORIES = ("system_program", "container_data", "logs", "control_system", "documentation")
REQUIRED_CATEGORIES = ("system_program", "container_data", "logs")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": "<int><unit>, unit s|m|h|d|w|y (y = 365d); an integer means seconds",
        }
    ),
]


def _share(value: object) -> object:
    """'10%' -> 0.1; numbers pass through (validated as 0..1 by the field)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage such as 10%") from None
    return value


Share = Annotated[
    float,
    BeforeValidator(_share),
    Field(ge=0, le=1),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": 1},
                              {"type": "string", "pattern": r"^\d+(\.\d+)?%$"}],
                    "description": "a share: 0.1 or 10%"}),
]


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a safe name (file/key component); else raise ValueError saying why."""
    if not value or len(value) > NAME_MAX:
        raise ValueError(f"{what} must be 1 to {NAME_MAX} characters")
    if _CONTROL_RE.search(value):
        raise ValueError(f"{what} must not contain control characters")
    if "/" in value or "\\" in value:
        raise ValueError(f"{what} {value!r} must not contain path separators")
    if ".." in value:
        raise ValueError(f"{what} {value!r} must not contain '..'")
    if value.startswith("."):
        raise ValueError(f"{what} {value!r} must not start with a dot")
    if not NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} may only use letters, digits, '_', '.', '-' and must start with a letter or digit"
        )
    return value


def _no_control(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError("must not contain control characters")
    return value


def _no_option(value: str | None) -> str | None:
    """Values that end up in argv must not look like options."""
    if value is not None:
        _no_control(value)
        if value.startswith("-"):
            raise ValueError(f"{value!r} must not start with '-'")
    return value


def _resolve_secret(value: Path, info: ValidationInfo) -> Path:
    """Absolute paths stay; relative ones are joined to ``secrets_dir`` from the validation context."""
    secrets_dir = (info.context or {}).get("secrets_dir")
    if value.is_absolute() or secrets_dir is None:
        return value
    return Path(secrets_dir) / value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Site(_Model):
    """The terminal this policy set protects."""

    name: str = Field(min_length=1, max_length=200)
    port: Literal["keihin", "nagoya", "osaka", "kobe", "hakata", "other"]
    host: str | None = Field(default=None, description="default: this machine's hostname")
    allowable_downtime: Duration | None = Field(
        default=None, description="how long cargo handling may stop: the whole terminal's projected time to "
                                  "service (every target restored) is judged against it")
    restore_parallelism: int | None = Field(
        default=None, ge=1, le=64, description="restores run at once per destination in the projected time "
                                               "to service; default 1 (different destinations in parallel)")

    @property
    def specific_port(self) -> bool:
        """True for the five specific ports with extra mandatory items (Keihin, Nagoya, Osaka, Kobe, Hakata)."""
        return self.port in SPECIFIC_PORTS

    _name_ok = field_validator("name", "host")(lambda v: v if v is None else _no_control(v))


class _Destination(_Model):
    password_file: Path = Field(description="restic repository password file; relative -> secrets_dir")
    failure_domain: str | None = Field(default=None, description="site/room/provider sharing failure risk")
    copy_from: str | None = Field(
        default=None, description="fill this destination with `restic copy` from the named destination "
        "after each backup (same chunker parameters) instead of reading the sources again")

    _secret = field_validator("password_file", mode="after")(_resolve_secret)

    @property
    def secret_files(self) -> dict[str, Path]:
        """Field name -> resolved path of each secret file this destination needs."""
        return {"password_file": self.password_file}


class S3Destination(_Destination):
    """An S3 bucket (ideally with Object Lock) holding a restic repository under ``path``."""

    kind: Literal["s3"]
    endpoint: str
    bucket: str
    path: str = Field(default="restic", description="key prefix of the restic repository in the bucket")
    region: str = "us-east-1"
    object_lock: bool = False
    lock_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"
    pilot: bool = Field(default=False, description="a trial bucket; only then may lock_mode be GOVERNANCE")
    credentials_file: Path = Field(
        description="AWS_ACCESS_KEY_ID=/AWS_SECRET_ACCESS_KEY= lines; relative -> secrets_dir"
    )
    maintainer_credentials_file: Path | None = Field(
        default=None, description="keys of the identity that extends retention (backupd extend-locks)"
    )
    auditor_credentials_file: Path | None = Field(
        default=None, description="read-only keys for backupd audit storage; default: credentials_file"
    )
    canary_credentials_file: Path | None = Field(
        default=None, description="keys of the canary identity, allowed to delete object versions only under "
        ".backupd-canary/ (deploy/iam/canary.json): the audit's delete canary; without it the lock is unproven"
    )
    lock_extension: Duration | None = Field(
        default=None, description="extend-locks keeps retain-until >= now + this; default: longest min_history"
    )

    _cred = field_validator(
        "credentials_file", "maintainer_credentials_file", "auditor_credentials_file", "canary_credentials_file",
        mode="after",
    )(lambda v, info: v if v is None else _resolve_secret(v, info))

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/@]+(/\S*)?$", v):
            raise ValueError(
                "endpoint must be an http:// or https:// URL without user info (keys go in credentials_file)"
            )
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET_RE.match(v) or ".." in v:
            raise ValueError(f"bucket {v[:80]!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        return v

    @field_validator("path")
    @classmethod
    def _prefix(cls, v: str) -> str:
        parts = PurePosixPath(v.strip("/")).parts
        if not parts or any(p in (".", "..") for p in parts) or _CONTROL_RE.search(v):
            raise ValueError(f"path {v[:80]!r} must be a non-empty key prefix without '.' or '..' parts")
        if parts[0] == "evidence" or parts[0].startswith(".backupd-"):
            # the writer may write its repository path: one there would reach every host's evidence or markers
            raise ValueError(f"path {v[:80]!r} is inside a prefix backupd reserves (evidence/, .backupd-*)")
        return "/".join(parts)

    @property
    def secret_files(self) -> dict[str, Path]:
        # canary_credentials_file is not here: only the storage audit uses it and reports a missing one as a
        # finding, so a missing canary key never stops backups (lint errors do).
        files = {"credentials_file": self.credentials_file, "password_file": self.password_file}
        for key in ("maintainer_credentials_file", "auditor_credentials_file"):
            if getattr(self, key) is not None:
                files[key] = getattr(self, key)
        return files


class LocalDestination(_Destination):
    """A restic repository in a local (e.g. removable, offline) directory; no object lock."""

    kind: Literal["local"]
    path: Path
    offline: bool = Field(default=False, description="media is disconnected between backups")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        if not v.is_absolute():
            raise ValueError(f"path {str(v)[:80]!r} must be absolute")
        return v


_UUID_RE = re.compile(r"^[0-9A-Fa-f]{4}([0-9A-Fa-f-]{0,32}[0-9A-Fa-f])?$")


class Medium(_Model):
    """One medium of a rotation set: a name, and the filesystem UUID and/or label that identify it when it
    is attached (both, when given, must match; a mount path alone never identifies a medium)."""

    name: str
    uuid: str | None = Field(default=None, description="filesystem UUID (blkid/lsblk -f), e.g. of ext4")
    label: str | None = Field(default=None, max_length=64, description="filesystem label")

    _name = field_validator("name")(lambda v: check_name(v, "medium name"))

    @field_validator("uuid")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        if v is not None and not _UUID_RE.match(v):
            raise ValueError(f"uuid {v[:80]!r} is not a filesystem UUID (hex digits and '-')")
        return v.lower() if v is not None else None

    @field_validator("label")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        return v if v is None else _no_option(v)

    @model_validator(mode="after")
    def _identified(self) -> Medium:
        if self.uuid is None and self.label is None:
            raise ValueError(f"medium {self.name!r} needs 'uuid' or 'label' (never a mount path alone)")
        return self


class RemovableDestination(_Destination):
    """A rotation set of removable media (USB disks swapped weekly): each holds its own restic repository,
    filled by `backupd media sync` with `restic copy` while it is attached. Targets name it in `offline`,
    never in `destinations` (it is absent most of the time)."""

    kind: Literal["removable"]
    media: list[Medium] = Field(min_length=1, description="the rotation set, e.g. weekly-a, weekly-b, weekly-c")

    @model_validator(mode="after")
    def _distinct(self) -> RemovableDestination:
        for key in ("name", "uuid", "label"):
            values = [getattr(m, key) for m in self.media if getattr(m, key) is not None]
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValueError(f"media: {key} {dup[0]!r} is given to more than one medium")
        return self

    def medium(self, name: str) -> Medium | None:
        return next((m for m in self.media if m.name == name), None)


Destination = Annotated[Union[S3Destination, LocalDestination, RemovableDestination], Field(discriminator="kind")]


class DumpSource(_Model):
    """A dump streamed into the snapshot: ``pg_dump`` of one database, or any ``command`` writing to stdout."""

    kind: Literal["pg_dump", "command"]
    database: str | None = None
    format: Literal["plain", "custom"] = Field(
        default="plain", description="pg_dump only: plain (SQL, loaded with psql) or custom (uncompressed "
                                     "archive, restored in parallel with pg_restore -j; the faster restore)"
    )
    host: str | None = Field(default=None, description="socket directory or host name")
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    command: list[str] | None = Field(default=None, min_length=1, description="argv, no shell")
    filename: str | None = Field(
        default=None, description="name inside the snapshot; default <database>.sql (plain), "
                                  "<database>.dump (custom) or <target>.dump"
    )
    row_loss_allowance: dict[str, Share] = Field(
        default_factory=dict,
        description="share of a table's rows one generation may lose against the last clean one before the "
                    "generation is flagged suspect (0 for tables that only grow, e.g. event history); "
                    "key 'default' for the other tables (default 0.5)",
    )

    _argv_safe = field_validator("database", "host", "user")(_no_option)

    @field_validator("filename")
    @classmethod
    def _filename(cls, v: str | None) -> str | None:
        return v if v is None else check_name(v, "filename")

    @model_validator(mode="after")
    def _by_kind(self) -> DumpSource:
        if self.kind == "pg_dump":
            if not self.database:
                raise ValueError("kind pg_dump needs 'database'")
            if self.command is not None:
                raise ValueError("'command' is only allowed with kind command")
            suffix = "sql" if self.format == "plain" else "dump"
            self.filename = self.filename or check_name(f"{self.database}.{suffix}", "filename")
        else:
            if "format" in self.model_fields_set:
                raise ValueError("'format' is only allowed with kind pg_dump")
            if not self.command:
                raise ValueError("kind command needs 'command' (an argv list)")
            extra = [k for k in ("database", "host", "port", "user") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)} only allowed with kind pg_dump")
        return self


def _absolute_path(value: str) -> str:
    _no_control(value)
    if not value.startswith("/"):
        raise ValueError(f"path {value[:80]!r} is relative; source paths must be absolute")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]


class Sources(_Model):
    """What to back up: absolute ``paths`` (+ ``excludes`` globs) or one ``dump``."""

    paths: list[AbsolutePath] | None = Field(default=None, min_length=1)
    excludes: list[str] = Field(default_factory=list)
    dump: DumpSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Sources:
        if (self.paths is None) == (self.dump is None):
            raise ValueError("give exactly one of 'paths' or 'dump'")
        if self.dump is not None and self.excludes:
            raise ValueError("'excludes' is only allowed with 'paths'")
        return self


class Retention(_Model):
    """restic ``forget`` keep rules plus ``min_history``: how far back generations must reach."""

    keep_last: int = Field(default=0, ge=0)
    keep_hourly: int = Field(default=0, ge=0)
    keep_daily: int = Field(default=0, ge=0)
    keep_weekly: int = Field(default=0, ge=0)
    keep_monthly: int = Field(default=0, ge=0)
    keep_yearly: int = Field(default=0, ge=0)
    min_history: Duration = Field(default=timedelta(weeks=6), description="oldest generation kept; default 6w")


class Offline(_Model):
    """The target's offline copies on a removable rotation set (backupd media sync)."""

    max_age: Duration = Field(description="the newest read-back-verified offline copy must be younger than "
                                          "this (e.g. 8d for a weekly rotation)")
    destination: str | None = Field(default=None, description="the removable destination; default: the only "
                                                              "one in the policy set")

    @field_validator("max_age")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("max_age must be greater than zero")
        return v


class Target(_Model):
    """One backup target: what, how often (frequency = RPO), how long a restore may take (RTO), where to."""

    name: str
    category: Literal["system_program", "container_data", "logs", "control_system", "documentation"]
    environment: Literal["production", "development", "evaluation"] | None = Field(
        default=None, description="required for system_program, not allowed otherwise"
    )
    source: Literal["server", "network_device"] | None = Field(
        default=None, description="required for logs, not allowed otherwise"
    )
    owner: str = Field(min_length=1)
    description: str | None = None
    sources: Sources
    frequency: Duration
    rto: Duration | None = Field(default=None, description="allowable cargo-handling downtime")
    retention: Retention = Field(default_factory=Retention)
    destinations: list[str] = Field(min_length=1)
    drill: str | None = Field(default=None, description="restore_tests/ spec reference")
    offline: Offline | None = Field(default=None, description="offline copies on a removable rotation set")
    append_only: bool | None = Field(
        default=None, description="files only grow (or rotate): previously backed-up bytes must still be each "
                                  "file's prefix, checked at every backup; default true for category logs"
    )

    _name = field_validator("name")(lambda v: check_name(v, "target name"))

    @field_validator("frequency")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("frequency must be greater than zero")
        return v

    @model_validator(mode="after")
    def _category_fields(self) -> Target:
        for key, category in (("environment", "system_program"), ("source", "logs")):
            present = getattr(self, key) is not None
            if self.category == category and not present:
                raise ValueError(f"category {category} needs '{key}'")
            if self.category != category and present:
                raise ValueError(f"'{key}' is only allowed with category {category}")
        dump = self.sources.dump
        if dump is not None and dump.filename is None:
            dump.filename = f"{self.name}.dump"
        return self

    @property
    def is_append_only(self) -> bool:
        """Logs (unless append_only: false) and targets marked append_only: true."""
        return self.append_only if self.append_only is not None else self.category == "logs"

    @property
    def rpo(self) -> timedelta:
        """Recovery point objective: at most one interval of changes is lost."""
        return self.frequency


class Policy(_Model):
    """One policy file. A policy set (several files) shares site, destinations and target names."""

    version: Literal[1]
    site: Site | None = None
    destinations: dict[str, Destination] = Field(default_factory=dict)
    targets: list[Target] = Field(default_factory=list)

    @field_validator("destinations", mode="before")
    @classmethod
    def _destination_names(cls, v: object) -> object:
        if isinstance(v, dict):
            for key in v:
                check_name(str(key), "destination name")
        return v


def json_schema() -> dict:
    """The JSON Schema of a policy file (validation mode)."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "backupd policy"
    return schema


def json_schema_text() -> str:
    """``json_schema()`` as the text committed in ``policy.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(json_schema_text())
