"""Load one policy file safely: bytes -> YAML events (refusing tags, anchors, aliases) -> data -> ``${VAR}``
interpolation -> pydantic validation. Never raises for bad input; every problem becomes a ``LintFinding``
with the file, the 1-based line and the dotted field path (e.g. ``targets[2].retention.min_history``).

Environment interpolation works like borgmatic's: in every string value (not in keys), ``${NAME}`` is replaced by
the variable and ``${NAME:-default}`` falls back to ``default``; ``\\${NAME}`` stays literal ``${NAME}``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from backupd.policy.schema import Policy

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_EVENTS = 20_000  # ~500 targets; bigger estates split policies into several files
_VAR_RE = re.compile(r"(\\?)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

EMPTY_MESSAGE = "file is empty; expected a policy mapping with 'version: 1'"

Severity = Literal["error", "warning"]
FieldPath = tuple[str | int, ...]


@dataclass
class LintFinding:
    """One problem in a policy file; ``str()`` gives ``file:line: field: severity: message``."""

    file: str
    line: int
    field: str
    message: str
    severity: Severity = "error"
    #: A guideline gap (a missing category, short history): a warning that `policy lint` still counts
    #: (exit 1), but never a reason to stop backing up.
    gap: bool = False

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.severity}: {self.message}"


@dataclass
class LoadedPolicy:
    """The outcome of loading one file: the policy (None if invalid), findings, and a field -> line map."""

    path: Path
    policy: Policy | None = None
    findings: list[LintFinding] = field(default_factory=list)
    unreadable: bool = False
    lines: dict[FieldPath, int] = field(default_factory=dict, repr=False)

    def line_of(self, field_path: FieldPath) -> int:
        """1-based line of the node at ``field_path``, else of its nearest existing parent, else 1."""
        path = tuple(field_path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def add(self, path: FieldPath, message: str, severity: Severity = "error", line: int | None = None) -> None:
        """Record a finding at ``path`` (line looked up unless given)."""
        line = self.line_of(path) if line is None else line
        self.findings.append(LintFinding(str(self.path), line, dotted(path), message, severity))


def dotted(path: FieldPath) -> str:
    """``("targets", 2, "retention")`` -> ``"targets[2].retention"``; the empty path is ``"(file)"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def load_policy_file(path: Path, secrets_dir: Path, env: Mapping[str, str] | None = None) -> LoadedPolicy:
    """Load and validate one policy file; relative credential paths resolve against ``secrets_dir``."""
    loaded = LoadedPolicy(path=Path(path))
    text = _read_text(loaded)
    if text is None:
        return loaded
    data = _parse(text, loaded)
    if data is None:
        return loaded
    unresolved: set[FieldPath] = set()
    data = _interpolate(data, (), os.environ if env is None else env, loaded, unresolved)
    try:
        policy = Policy.model_validate(data, context={"secrets_dir": Path(secrets_dir)})
    except ValidationError as exc:
        for error in exc.errors():
            path = _error_path(data, error)
            if path not in unresolved:  # the undefined variable is the cause; say it once
                loaded.add(path, _error_message(error))
        return loaded
    loaded.policy = None if any(f.severity == "error" for f in loaded.findings) else policy
    return loaded


def read_mapping(path: Path) -> tuple[LoadedPolicy, dict | None]:
    """(LoadedPolicy with the line map, the top-level mapping as plain data or None after a finding):
    the hostile-input-safe read and parse, for callers that validate on their own (backupd.yaml)."""
    loaded = LoadedPolicy(path=Path(path))
    text = _read_text(loaded)
    return loaded, (_parse(text, loaded) if text is not None else None)


def add_validation_errors(loaded: LoadedPolicy, data: Any, exc: ValidationError, message=None) -> None:
    """One finding per pydantic error, at the line of the field it names; ``message(error)`` may
    override the default wording (None keeps it)."""
    for error in exc.errors():
        text = (message(error) if message else None) or _error_message(error)
        loaded.add(_error_path(data, error), text)


def load_model(path: Path, model):
    """(LoadedPolicy, validated model or None): the same hostile-input-safe load for any other
    schema (e.g. drill specs), without interpolation; findings name file, line and field."""
    loaded, data = read_mapping(path)
    if data is None:
        return loaded, None
    try:
        return loaded, model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loaded.add(_error_path(data, error), _error_message(error))
        return loaded, None


def _unreadable(loaded: LoadedPolicy, message: str, line: int = 1) -> None:
    loaded.unreadable = True
    loaded.add((), message, line=line)


def _read_text(loaded: LoadedPolicy) -> str | None:
    """The file's text, or None after recording why it is unreadable (size, binary, encoding, OS error)."""
    try:
        fd = os.open(loaded.path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                _unreadable(loaded, "not a regular file", 0)
                return None
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        _unreadable(loaded, f"cannot read file: {exc.strerror or exc}", 0)
        return None
    if len(raw) > MAX_BYTES:
        _unreadable(loaded, f"file is larger than {MAX_BYTES // 1024} KiB; refusing to parse it", 0)
    elif b"\0" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\0")) + 1
        _unreadable(loaded, "file contains NUL bytes (binary?); a policy must be UTF-8 text", line)
    else:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            _unreadable(loaded, "file is not valid UTF-8 text", raw.count(b"\n", 0, exc.start) + 1)
    return None


def _mark_line(exc: Exception) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else 1


def _scan_events(text: str) -> tuple[int, str] | None:
    """Refuse aliases, anchors, explicit tags, several documents, deep nesting and huge documents, from parser
    events alone.

    Nothing is constructed here, so an alias bomb or ``!!python/object`` costs one linear pass.
    """
    depth = documents = nodes = 0
    for count, event in enumerate(YAML(typ="safe", pure=True).parse(text)):
        line = event.start_mark.line + 1
        if count > MAX_EVENTS:
            return line, f"more than {MAX_EVENTS} YAML nodes; split the policy into several files"
        if isinstance(event, AliasEvent):
            return line, f"YAML aliases (*{event.anchor[:40]}) are not allowed in policies"
        if getattr(event, "anchor", None):
            return line, f"YAML anchors (&{event.anchor[:40]}) are not allowed in policies"
        if getattr(event, "tag", None) is not None:
            return line, f"explicit YAML tags ({str(event.tag)[:60]}) are not allowed in policies"
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                return line, "only one YAML document per policy file"
        elif isinstance(event, (MappingStartEvent, SequenceStartEvent, ScalarEvent)):
            nodes += 1
            depth += not isinstance(event, ScalarEvent)
            if depth > MAX_DEPTH:
                return line, f"nesting deeper than {MAX_DEPTH} levels"
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            depth -= 1
    return None if nodes else (1, EMPTY_MESSAGE)


def _parse(text: str, loaded: LoadedPolicy) -> dict | None:
    """YAML text -> plain dict (recording line numbers), or None after recording a finding."""
    try:
        refused = _scan_events(text)
        if refused:
            loaded.add((), refused[1], line=refused[0])
            return None
        document = YAML(typ="rt", pure=True).load(text)
    except DuplicateKeyError as exc:
        loaded.add((), f"duplicate key: {exc.problem}".splitlines()[0], line=_mark_line(exc))
        return None
    except MarkedYAMLError as exc:
        loaded.add((), f"invalid YAML: {exc.problem or exc.context}", line=_mark_line(exc))
        return None
    except (YAMLError, RecursionError, ValueError, TypeError) as exc:
        loaded.add((), f"invalid YAML: {str(exc)[:200]}")
        return None
    if document is None:
        loaded.add((), EMPTY_MESSAGE)
        return None
    if not isinstance(document, CommentedMap):
        loaded.add((), f"top level must be a mapping (key: value), not a {_kind(document)}")
        return None
    loaded.lines[()] = document.lc.line + 1
    return _plain(document, (), loaded)


def _kind(value: Any) -> str:
    return "list" if isinstance(value, list) else type(value).__name__


def _plain(node: Any, path: FieldPath, loaded: LoadedPolicy) -> Any:
    """Round-trip nodes -> plain Python values, recording the 1-based line of every key and list item."""
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            line = node.lc.key(key)[0] + 1
            if not isinstance(key, str):
                loaded.add(path, f"key {str(key)[:40]!r} must be a string; quote it", line=line)
                continue
            loaded.lines[path + (key,)] = line
            out[key] = _plain(value, path + (key,), loaded)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            loaded.lines[path + (index,)] = node.lc.item(index)[0] + 1
            items.append(_plain(value, path + (index,), loaded))
        return items
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, (datetime, date)):
        return node.isoformat()
    return str(node)


def _interpolate(value: Any, path: FieldPath, env: Mapping[str, str], loaded: LoadedPolicy, unresolved: set) -> Any:
    """Replace ``${NAME}``/``${NAME:-default}`` in string values; undefined names become findings and their
    paths (and parents) are added to ``unresolved``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, path + (k,), env, loaded, unresolved) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path + (i,), env, loaded, unresolved) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name in env:
            return env[name]
        if default is not None:
            return default
        loaded.add(path, f"environment variable {name} is not set and has no default (write ${{{name}:-default}})")
        unresolved.update({path, path[:-1]})
        return match.group(0)

    return _VAR_RE.sub(substitute, value)


def _error_path(data: Any, error: Mapping[str, Any]) -> FieldPath:
    """Map a pydantic error location onto the data (dropping union tags like ``s3``)."""
    loc = error.get("loc", ())
    current, path = data, []
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif index == len(loc) - 1 and error.get("type") == "missing" and isinstance(part, str):
            pass
        else:
            continue
        path.append(part)
    return tuple(path)


def _error_message(error: Mapping[str, Any]) -> str:
    """A short, secret-free message for one pydantic error."""
    kind, msg, loc = error.get("type", ""), str(error.get("msg", "")), error.get("loc", ())
    last = loc[-1] if loc else ""
    if kind == "missing":
        return f"required key '{last}' is missing"
    if kind == "extra_forbidden":
        return f"unknown key '{last}' (check the spelling; see policy.schema.json)"
    if kind == "union_tag_not_found":
        return "missing 'kind' (s3 or local)"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    value = error.get("input")
    if isinstance(value, (str, int, float, bool)):
        return f"{msg} (got {str(value)[:60]!r})"
    return msg
