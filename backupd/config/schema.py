"""The schema of backupd.yaml: the one place its keys and sections (daemon, notify, metrics, evidence) are
validated, with the policy loader's hostile-input-safe YAML reading and line map.

``parse(path, known)`` -> ``(ConfigFile, data)`` or ``ConfigError`` whose lines read ``file:line: field: message``.
``section(name, data)`` validates one section given in code (no file, so no line numbers).
Values are strict: ``retry_attempts: "3"`` or ``state_dir: [a, b]`` are errors, never coerced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator)

from backupd.errors import ConfigError
from backupd.policy.durations import parse_duration
from backupd.policy.loader import EMPTY_MESSAGE, LoadedPolicy, add_validation_errors, read_mapping
from backupd.policy.schema import check_name

_MAX_FINDINGS = 50


def _text(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


Text = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_text)]
Seconds = Annotated[float, Field(ge=0, le=366 * 86400)]


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9187")
    if host.strip("[]") not in ("", "127.0.0.1", "::1", "localhost"):
        raise ValueError(f"{host} is not a loopback address; expose metrics through a proxy or the textfile collector")
    return value


def _email(value: str) -> str:
    if "@" not in value:
        raise ValueError(f"{value[:60]!r} is not an e-mail address")
    return value


def _one_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _duration(value: Any) -> Any:
    parse_duration(value)  # ValueError names the problem
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class DaemonSection(_Section):
    concurrency: Annotated[int, Field(ge=1, le=64)] | None = None  # None: by CPU count
    jitter_seconds: Seconds = 60.0
    retry_seconds: Seconds = 300.0
    stop_timeout_seconds: Seconds = 30.0
    lock_wait_seconds: Seconds = 600.0


class SmtpSection(_Section):
    host: Text
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    sender: Text | None = Field(None, alias="from")
    to: Annotated[list[Annotated[Text, AfterValidator(_email)]], Field(min_length=1),
                  BeforeValidator(_one_or_list)]
    starttls: bool = False
    credentials_file: Text | None = None
    timeout_seconds: Annotated[float, Field(ge=1, le=3600)] = 20.0
    ca_file: Text | None = None  # STARTTLS verifies against this CA (default: system CAs); relative -> secrets_dir


class NotifySection(_Section):
    webhook: Annotated[Text, AfterValidator(_url)] | None = None
    smtp: SmtpSection | None = None
    syslog: bool | Text = False  # true, a socket path or "host:port"
    rate_limit_per_hour: Annotated[int, Field(ge=1)] = 30
    rpo_grace_seconds: Seconds = 0.0


class MetricsSection(_Section):
    listen: Annotated[Text, AfterValidator(_listen)] | None = None
    textfile: Text | None = None


class EvidenceSection(_Section):
    mirror: Text | None = None  # a policy destination name
    audit_period: Annotated[str | int, AfterValidator(_duration)] = "1y"
    credentials_file: Text | None = None  # keys that write the mirror; relative -> secrets_dir
    checkpoint_period: Annotated[str | int, AfterValidator(_duration)] = "1h"  # signed checkpoints to the mirror
    keyring: Text | None = None  # default --keyring of evidence export; relative -> beside backupd.yaml
    # how long each evidence object stays locked (COMPLIANCE); default: the longer of audit_period and 1y
    retention: Annotated[str | int, AfterValidator(_duration)] | None = None

    @field_validator("retention")
    @classmethod
    def _outlives_audit_period(cls, value, info: ValidationInfo):
        period = info.data.get("audit_period")
        if value is not None and period is not None and parse_duration(value) < parse_duration(period):
            raise ValueError(f"{value} is shorter than evidence.audit_period ({period}): evidence would be "
                             "deletable before the audit period ends")
        return value


Identity = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_text)]
HostName = Annotated[Text, AfterValidator(lambda v: check_name(v, "host"))]


class GrantsSection(_Section):
    """Grant documents the storage audit judges itself (backupd.storage.grants); paths relative -> beside
    backupd.yaml."""

    seaweedfs_identities: Text | None = None  # a copy of the SeaweedFS -s3.config file (credentials removed)
    iam_policies: dict[Identity, Text] | None = None  # AWS: identity name -> the IAM policy JSON attached to it
    bucket_policy: bool = True  # AWS: also judge each bucket's policy (GetBucketPolicy with the auditor's keys)
    writers: dict[HostName, Identity] | None = None  # backup host -> its writer identity (default: writer)
    verifiers: dict[HostName, Identity] | None = None  # verifier host -> its identity (default: this host: verifier)
    privileged: list[Identity] = ["admin", "maintainer"]  # may hold more than the rules allow; not judged
    canary: Identity | None = "canary"  # confined to .backupd-canary/


SECTION_MODELS: dict[str, type[_Section]] = {
    "daemon": DaemonSection, "notify": NotifySection, "metrics": MetricsSection, "evidence": EvidenceSection,
    "grants": GrantsSection,
}


class ConfigFile(BaseModel):
    """The top level. Keys not declared here are checked against the caller's known keys (see `parse`)."""

    model_config = ConfigDict(extra="allow", strict=True)

    policies: Annotated[list[Text], Field(min_length=1), BeforeValidator(_one_or_list)] = [
        "/etc/backupd/policies/*.yaml"]
    state_dir: Text = "/var/lib/backupd"
    secrets_dir: Text = "/etc/backupd/secrets"
    host: Annotated[Text, AfterValidator(lambda v: check_name(v, "host"))] | None = None
    restic: Text = "restic"
    retry_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    retry_wait_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    job_timeout_seconds: Annotated[float, Field(ge=1, le=7 * 86400)] = 4 * 3600.0
    storage_timeout_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    lock_wait_seconds: Annotated[float, Field(ge=0, le=86400)] = 60.0
    restore_tests: Text | None = None
    role: Literal["backup", "maintenance", "verifier"] = "backup"
    hosts: Annotated[list[Annotated[Text, AfterValidator(lambda v: check_name(v, "host"))]],
                     Field(min_length=1)] | None = None
    daemon: DaemonSection | None = None
    notify: NotifySection | None = None
    metrics: MetricsSection | None = None
    evidence: EvidenceSection | None = None
    grants: GrantsSection | None = None


def _message(error: dict) -> str | None:
    """Wording for backupd.yaml where the policy loader's default would point at policies."""
    if error.get("type") == "extra_forbidden":
        loc = error.get("loc", ())
        model = SECTION_MODELS.get(str(loc[0])) if loc else None
        known = sorted(f.alias or n for n, f in model.model_fields.items()) if model and len(loc) == 2 else []
        return f"unknown key '{loc[-1]}'" + (f"; known: {', '.join(known)}" if known else "")
    if error.get("type") == "list_type" and tuple(error.get("loc", ())) == ("policies",):
        return "must be a glob or a list of globs (strings)"
    if error.get("type") in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping (key: value)"
    return None


def raise_findings(loaded: LoadedPolicy) -> None:
    """ConfigError listing the findings as `file:line: field: message`."""
    lines = [f"{f.file}:{f.line}: {f.field}: {f.message}" for f in loaded.findings]
    if len(lines) > _MAX_FINDINGS:
        lines = lines[:_MAX_FINDINGS] + [f"... and {len(lines) - _MAX_FINDINGS} more"]
    raise ConfigError("invalid config:\n" + "\n".join(lines) if len(lines) > 1 else lines[0])


def parse(path: Path, known: set[str], sections: tuple[str, ...] = ()) -> tuple[ConfigFile, dict, LoadedPolicy]:
    """Read and validate backupd.yaml; `known` are the top-level keys other modules accept, `sections`
    the keys that must be mappings. Returns the model, the plain data and the line map."""
    loaded, data = read_mapping(path)
    for finding in loaded.findings:
        if finding.message == EMPTY_MESSAGE:
            finding.message = "file is empty; expected a mapping such as 'policies: [...]' and 'state_dir: ...'"
        finding.message = finding.message.replace("in policies", "in backupd.yaml").replace(
            "split the policy into several files", "backupd.yaml is too large")
    if data is None:
        raise_findings(loaded)
    try:
        model = ConfigFile.model_validate(data)
    except ValidationError as exc:
        add_validation_errors(loaded, data, exc, _message)
        model = None
    for key in sorted(set(data) - set(ConfigFile.model_fields) - set(known)):
        loaded.add((key,), f"unknown key '{key}'; known: {', '.join(sorted(set(known) | set(ConfigFile.model_fields)))}")
    for key in sections:
        if key not in SECTION_MODELS and data.get(key) is not None and not isinstance(data[key], dict):
            loaded.add((key,), "must be a mapping (key: value)")
    if loaded.findings:
        raise_findings(loaded)
    return model, data, loaded


def section(name: str, data: dict | None) -> _Section:
    """Validate one section given in code; ConfigError names the field (`notify.smtp.to: ...`)."""
    model = SECTION_MODELS[name]
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        loaded = LoadedPolicy(path=Path(name))
        add_validation_errors(loaded, data or {}, exc, _message)
        problems = "; ".join(f"{name}.{f.field}: {f.message}" if f.field != "(file)" else f"{name}: {f.message}"
                             for f in loaded.findings)
        raise ConfigError(problems) from None
