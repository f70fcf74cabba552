"""pgcount: names resolved against the catalog in Python, identifiers quoted from the catalog's values,
only tables counted with pg_catalog.count(*), and every result parsed as untrusted text."""

from __future__ import annotations

import json
import re

from backupd.sources import pgcount

FROM = re.compile(r'FROM "((?:[^"]|"")*)"\."((?:[^"]|"")*)"(?: UNION ALL |$)')


class Database:
    """A fake session: the catalog's relations and each table's count (any JSON value: hostile)."""

    def __init__(self, relations: dict[tuple[str, str], str], counts: dict[tuple[str, str], object]):
        self.relations, self.counts, self.sql = relations, counts, []

    def query(self, sql: str) -> list[str]:
        self.sql.append(sql)
        if sql == pgcount.RELATIONS_SQL:
            return [json.dumps([s, n, k]) for (s, n), k in self.relations.items()] + ["not json", "[1, 2]"]
        tables = [tuple(p.replace('""', '"') for p in m) for m in FROM.findall(sql)]
        return [json.dumps([i, self.counts[key]]) for i, key in enumerate(tables)]


def test_counts_tables_only_and_names_what_stands_in_their_place():
    db = Database({("public", "containers"): "r", ("public", "gates"): "v", ("odd", 'we"ird.name'): "r",
                   ("public", "events"): "p", ("evil", "count"): "r"},
                  {("public", "containers"): 1, ("odd", 'we"ird.name'): 7, ("public", "events"): 4,
                   ("evil", "count"): 0})
    counted = pgcount.count_rows(db.query, ["public.containers", "public.gates", 'odd.we"ird.name', "events",
                                            "public.missing"])
    assert counted.rows == {"public.containers": 1, 'odd.we"ird.name': 7, "public.events": 4}
    assert counted.problems == {
        "public.gates": "a view stands where the backup had a table; its rows are not counted",
        "public.missing": "not restored"}
    sql = db.sql[-1]
    assert 'FROM "odd"."we""ird.name"' in sql and 'FROM "public"."containers"' in sql
    assert sql.count("pg_catalog.count(*)") == 3 and " count(*)" not in sql.replace("pg_catalog.count(*)", "")


def test_a_count_that_is_no_integer_is_a_problem_never_an_exception():
    db = Database({("public", "a"): "r", ("public", "b"): "r"}, {("public", "a"): "100000 rows", ("public", "b"): 2})
    counted = pgcount.count_rows(db.query, ["public.a", "public.b"])
    assert counted.rows == {"public.b": 2}
    assert counted.problems == {"public.a": "its count did not come back as a number"}
    assert pgcount.parse_counts(["[0, 1.5]", "[0, true]", "[-1, 3]", "[9, 3]", "{", "[0, -1]"], 2) == {}


def test_session_settings_fix_the_search_path_and_read_only():
    assert pgcount.options() == "-c search_path=pg_catalog -c default_transaction_read_only=on -c row_security=off"
    assert "SET SESSION search_path = 'pg_catalog'" in pgcount.set_sql()


def test_a_check_naming_a_table_without_its_schema_says_why_it_is_not_found():
    from backupd.drill.spec import SqlCheck
    from backupd.errors import Finding
    from backupd.probes import postgres

    class Cluster:
        def query(self, sql):
            if "public." not in sql:
                raise Finding('relation "containers" does not exist')
            return ["7"]

    unqualified = SqlCheck(name="present", sql="SELECT count(*) FROM containers", min=1)
    assert postgres._check(Cluster(), unqualified, None) == (
        'present: relation "containers" does not exist (checks run with search_path = pg_catalog: name tables '
        "with their schema, e.g. public.containers)")
    qualified = SqlCheck(name="present", sql="SELECT count(*) FROM public.containers", min=1)
    assert postgres._check(Cluster(), qualified, None) is None
