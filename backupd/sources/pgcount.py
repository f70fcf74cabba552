"""Count the rows of a restored database so that the database cannot steer the count. A restored dump
is the attacker's: it may plant `evil.count(*)` and put its schema first on the database's search_path,
leave a view where a table was, or hide rows behind a row-level-security policy. So the session runs
with `SESSION` (sent when it starts or SET first, which a database or role setting cannot override:
only pg_catalog on the search path, read-only, row-level security an error rather than a filter), each
name is resolved against the catalog and matched here, only tables are counted (with
`pg_catalog.count(*)`, identifiers quoted from the catalog's values), and every result is parsed as
untrusted text.

`count_rows(query, names)` takes the way to run one query: `query(sql)` -> the result's lines (one
value per row), raising Finding when the query fails.

`settings_sql()` and `settings()` read the settings a load left (`ALTER DATABASE/ROLE ... SET`) the same
way, for the drill and for `restore --into-database`: every name pg_catalog-qualified, so neither a
`public.unnest(text[])`, a `public.pg_database` view nor the search_path the dump set can hide one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

#: Settings of a counting session (libpq `options`, or SET at its start).
SESSION = {"search_path": "pg_catalog", "default_transaction_read_only": "on", "row_security": "off"}
#: Relations with rows of their own to count: ordinary and partitioned tables.
TABLE_KINDS = {"r", "p"}
KIND_NAMES = {"v": "view", "m": "materialized view", "f": "foreign table", "S": "sequence",
              "c": "composite type", "i": "index", "I": "partitioned index", "t": "TOAST table"}
#: Every relation but indexes and TOAST tables, one JSON array per line (a name may hold any character).
RELATIONS_SQL = """
SELECT pg_catalog.json_build_array(n.nspname, c.relname, c.relkind)::pg_catalog.text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE c.relkind OPERATOR(pg_catalog.<>) ALL ('{i,I,t}'::pg_catalog."char"[])
"""

#: Settings stored for the current database (on it, or on a role in it) and on one role everywhere, a
#: JSON array [database or null, role or null, 'name=value'] per line; {role}: an SQL name expression.
SETTINGS_SQL = """
SELECT pg_catalog.json_build_array(d.datname, r.rolname, c)::pg_catalog.text
FROM pg_catalog.pg_db_role_setting s
LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase
LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.setrole
CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) c
WHERE s.setdatabase OPERATOR(pg_catalog.=) (SELECT x.oid FROM pg_catalog.pg_database x
                                            WHERE x.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
   OR (s.setdatabase OPERATOR(pg_catalog.=) 0::pg_catalog.oid
       AND s.setrole OPERATOR(pg_catalog.=) (SELECT x.oid FROM pg_catalog.pg_roles x
                                             WHERE x.rolname OPERATOR(pg_catalog.=) {role}))
"""

Query = Callable[[str], list[str]]


@dataclass
class Counted:
    """Restored rows by table (schema.name as the catalog spells it), and why a name was not counted."""

    rows: dict[str, int] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def options() -> str:
    """SESSION as a libpq `options` value."""
    return " ".join(f"-c {name}={value}" for name, value in SESSION.items())


def set_sql() -> list[str]:
    """SESSION as SET statements, for a connection that could not pass it at start."""
    return [f"SET SESSION {name} = '{value}'" for name, value in SESSION.items()]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """value as an E'' string literal: the same whatever standard_conforming_strings a dump set."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def settings_sql(role: str | None = None) -> str:
    """SETTINGS_SQL for the settings of the session's database and of role (None: the session's user)."""
    return SETTINGS_SQL.format(role="CURRENT_USER" if role is None else quote_literal(role))


def settings(lines: list[str]) -> set[tuple[str | None, str | None, str]]:
    """(database or None, role or None, 'name=value') from SETTINGS_SQL's lines; anything else skipped."""
    found = set()
    for line in lines:
        try:
            database, role, setting = json.loads(line)
        except (ValueError, TypeError):
            continue
        if isinstance(setting, str) and all(v is None or isinstance(v, str) for v in (database, role)):
            found.add((database, role, setting))
    return found


def relations(lines: list[str]) -> dict[tuple[str, str], str]:
    """(schema, name) -> relkind, from RELATIONS_SQL's lines (a line that is not such an array is skipped)."""
    found = {}
    for line in lines:
        try:
            schema, name, kind = json.loads(line)
        except (ValueError, TypeError):
            continue
        if all(isinstance(v, str) for v in (schema, name, kind)):
            found[(schema, name)] = kind
    return found


def resolve(catalog: dict[tuple[str, str], str], name: str) -> tuple[str, str] | None:
    """The catalog's (schema, relation) a manifest or spec name means: `schema.table` (any dot may
    split them, as the manifest writes names unquoted), else `public.name`."""
    parts = name.split(".")
    candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(1, len(parts))]
    for key in candidates + [("public", name)]:
        if key in catalog:
            return key
    return None


def count_sql(tables: list[tuple[str, str]]) -> str:
    """One query: a JSON [ordinal, count] line per table, counted with pg_catalog.count(*)."""
    return " UNION ALL ".join(
        f"SELECT pg_catalog.json_build_array({i}, pg_catalog.count(*))::pg_catalog.text "
        f"FROM {quote_ident(schema)}.{quote_ident(name)}" for i, (schema, name) in enumerate(tables))


def parse_counts(lines: list[str], size: int) -> dict[int, int]:
    """ordinal -> count from count_sql's lines; anything else is left out (a problem for the caller)."""
    found = {}
    for line in lines:
        try:
            ordinal, count = json.loads(line)
        except (ValueError, TypeError):
            continue
        if all(type(v) is int for v in (ordinal, count)) and 0 <= ordinal < size and count >= 0:
            found[ordinal] = count
    return found


def count_rows(query: Query, names: list[str]) -> Counted:
    """Restored rows of each named table; a name that is missing or not a table is a problem."""
    if not names:
        return Counted()
    catalog = relations(query(RELATIONS_SQL))
    counted, tables = Counted(), {}
    for name in names:
        key = resolve(catalog, name)
        kind = catalog.get(key) if key else None
        if key is None:
            counted.problems[name] = "not restored"
        elif kind not in TABLE_KINDS:
            counted.problems[name] = (f"a {KIND_NAMES.get(kind, f'relation of kind {kind!r}')} stands "
                                      "where the backup had a table; its rows are not counted")
        else:
            tables.setdefault(key, []).append(name)
    order = sorted(tables)
    found = parse_counts(query(count_sql(order)), len(order)) if order else {}
    for i, key in enumerate(order):
        if i in found:
            counted.rows[".".join(key)] = found[i]
        else:
            for name in tables[key]:
                counted.problems[name] = "its count did not come back as a number"
    return counted
