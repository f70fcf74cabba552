"""Deterministic sample TOS (Terminal Operating System) database: master data, history, inventory.

`create_tos_database(cluster)` builds it with COPY (the rows streamed while they are generated) and returns
`{table: row_count}`;
`advance_day(cluster, "tos", day)` applies one realistic day of change (about 1-3 % of rows).
The same seed always gives the same rows; timestamps are fixed relative to `BASE`, never the wall clock.
"""
from __future__ import annotations

import random
import string
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

from psycopg.copy import QueuedLibpqWriter

from demo.postgres import PostgresCluster

BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)
HISTORY_DAYS = 90
PURGE_DAYS = 90  # gate transactions older than this are purged every night (advance_day)
TABLES = ("vessels", "vessel_calls", "containers", "container_events", "yard_inventory", "gate_transactions")
OWNERS = ("MSK", "MSC", "CMA", "COS", "HLC", "ONE", "EMC", "YML", "HMM", "ZIM", "OOL", "TGH")
SIZE_TYPES = ("22G1", "42G1", "45G1", "22R1", "45R1", "22U1", "22T1", "42P1")
_SIZE_WEIGHTS = (30, 20, 30, 5, 8, 3, 2, 2)
_VESSEL_WORDS = ("Pacific", "Ocean", "Harmony", "Star", "Bridge", "Sakura", "Fuji", "Horizon", "Pioneer",
                 "Aurora", "Glory", "Unity", "Trust", "Spirit", "Wave", "Ise", "Atsuta", "Tokai")
BLOCKS = tuple(f"{c}{n}" for c in "ABCDEFGH" for n in range(1, 5))
CHUNK = 20_000  # containers generated between two writes to the COPY streams

SCHEMA = """
CREATE TABLE vessels (id int PRIMARY KEY, imo int NOT NULL UNIQUE, name text NOT NULL, line text NOT NULL,
    teu_capacity int NOT NULL);
CREATE TABLE vessel_calls (id int PRIMARY KEY, vessel_id int NOT NULL REFERENCES vessels, voyage text NOT NULL,
    berth text NOT NULL, eta timestamptz NOT NULL, ata timestamptz, atd timestamptz);
CREATE TABLE containers (id int PRIMARY KEY, number char(11) NOT NULL UNIQUE, size_type char(4) NOT NULL,
    owner text NOT NULL, line text NOT NULL, full_empty char(1) NOT NULL, gross_kg int NOT NULL,
    status text NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE container_events (id bigint PRIMARY KEY, container_id int NOT NULL, event_type text NOT NULL,
    event_time timestamptz NOT NULL, location text NOT NULL, vessel_call_id int, note text);
CREATE TABLE yard_inventory (container_id int PRIMARY KEY, block text NOT NULL, bay int NOT NULL,
    row_no int NOT NULL, tier int NOT NULL, since timestamptz NOT NULL);
CREATE TABLE gate_transactions (id bigint PRIMARY KEY, container_id int NOT NULL, direction text NOT NULL,
    truck_plate text NOT NULL, lane int NOT NULL, txn_time timestamptz NOT NULL, seal text);
"""
INDEXES = """
CREATE INDEX container_events_container ON container_events (container_id, event_time);
CREATE INDEX gate_transactions_time ON gate_transactions (txn_time);
CREATE INDEX containers_status ON containers (status);
"""


def _letter_values() -> dict[str, int]:
    """ISO 6346 letter values: A=10, B=12, ... (multiples of 11 skipped); digits are themselves."""
    values, v = {str(d): d for d in range(10)}, 10
    for letter in string.ascii_uppercase:
        if v % 11 == 0:
            v += 1
        values[letter] = v
        v += 1
    return values


_VALUES = _letter_values()


def check_digit(prefix10: str) -> int:
    """ISO 6346 check digit of owner code + category + 6-digit serial (10 characters)."""
    total = sum(_VALUES[c] << i for i, c in enumerate(prefix10))
    return total % 11 % 10


def container_number(cid: int) -> str:
    """Unique, valid ISO 6346 number for container id `cid` (1 <= cid <= 3,000,000: the owner code
    repeats every 12 ids and the serial every 1,000,000, so a number repeats only after 3,000,000)."""
    prefix = f"{OWNERS[cid % len(OWNERS)]}U{(cid * 7919) % 1_000_000:06d}"
    return prefix + str(check_digit(prefix))


def _ts(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


class _Builder:
    """Accumulates TSV rows per table for COPY; keeps id counters and the random stream."""

    def __init__(self, rng: random.Random, next_ids: dict[str, int] | None = None):
        self.rng = rng
        self.rows: dict[str, list[str]] = {t: [] for t in TABLES}
        self.ids = next_ids or {"container_events": 1, "gate_transactions": 1}

    def add(self, table: str, *values) -> None:
        self.rows[table].append("\t".join(["\\N" if v is None else str(v) for v in values]))

    def next_id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table] - 1

    def event(self, cid: int, kind: str, t: datetime, loc: str, call: int | None = None, note=None) -> None:
        self.add("container_events", self.next_id("container_events"), cid, kind, _ts(t), loc, call, note)

    def gate(self, cid: int, direction: str, t: datetime) -> None:
        r = self.rng
        plate = f"{r.choice(('Nagoya', 'Toyota', 'Mikawa', 'Owari'))} {r.randint(100, 999)} {r.randint(1000, 9999)}"
        self.add("gate_transactions", self.next_id("gate_transactions"), cid, direction, plate,
                 r.randint(1, 12), _ts(t), f"SL{r.randint(100000, 999999)}" if direction == "OUT" else None)

    def yard_slot(self) -> tuple[str, int, int, int]:
        r = self.rng
        return r.choice(BLOCKS), r.randint(1, 40), r.randint(1, 10), r.randint(1, 5)


def _vessels(b: _Builder, count: int = 36, calls: int = 60) -> list[tuple[int, datetime, datetime]]:
    r = b.rng
    for vid in range(1, count + 1):
        name = f"{r.choice(_VESSEL_WORDS)} {r.choice(_VESSEL_WORDS)} {vid}"
        teu = r.choice((2500, 4800, 8000, 14000))
        b.add("vessels", vid, 9_300_000 + vid * 37, name, OWNERS[vid % len(OWNERS)], teu)
    out = []
    for cid in range(1, calls + 1):
        ata = BASE + timedelta(hours=r.uniform(0, HISTORY_DAYS * 24 - 48))
        atd = ata + timedelta(hours=r.uniform(12, 40))
        b.add("vessel_calls", cid, r.randint(1, count), f"{cid:03d}{r.choice('EW')}", f"B{r.randint(1, 5)}",
              _ts(ata - timedelta(hours=r.uniform(0, 6))), _ts(ata), _ts(atd))
        out.append((cid, ata, atd))
    return out


def _container(b: _Builder, cid: int, calls: list[tuple[int, datetime, datetime]], end: datetime) -> None:
    """Master row plus a plausible history; status and yard position follow the last event."""
    r = b.rng
    if r.random() < 0.5:
        call, ata, _ = r.choice(calls)
        t = ata + timedelta(hours=r.uniform(1, 10))
        b.event(cid, "DISCHARGE", t, "QC", call)
        final = ("GATE_OUT", None)
    else:
        t = BASE + timedelta(hours=r.uniform(0, HISTORY_DAYS * 24 - 24))
        b.event(cid, "GATE_IN", t, "GATE")
        b.gate(cid, "IN", t)
        later = [c for c in r.sample(calls, 3) if c[1] > t]
        final = ("LOAD", later[0]) if later else ("GATE_OUT", None)
    created = t
    status, slot = "IN_YARD", b.yard_slot()
    for _ in range(r.choice((1, 2, 2, 3))):
        t += timedelta(hours=r.uniform(2, 48))
        slot = b.yard_slot()
        b.event(cid, "YARD_MOVE", min(t, end), f"{slot[0]}-{slot[1]:02d}-{slot[2]:02d}-{slot[3]}")
    t += timedelta(hours=r.uniform(4, 96))
    if r.random() < 0.75 and t < end:
        status = _leave(b, cid, final, t)
    if status == "IN_YARD":
        b.add("yard_inventory", cid, *slot, _ts(min(t, end)))
    size = r.choices(SIZE_TYPES, _SIZE_WEIGHTS)[0]
    full = "F" if r.random() < 0.7 else "E"
    b.add("containers", cid, container_number(cid), size, OWNERS[cid % len(OWNERS)], r.choice(OWNERS), full,
          r.randint(8000, 30000) if full == "F" else r.randint(2200, 4800), status, _ts(created), _ts(min(t, end)))


def _leave(b: _Builder, cid: int, final: tuple, t: datetime) -> str:
    kind, call = final
    if kind == "LOAD" and call[2] > t:
        b.event(cid, "LOAD", t, "QC", call[0])
        return "ON_VESSEL"
    b.event(cid, "GATE_OUT", t, "GATE")
    b.gate(cid, "OUT", t)
    return "GATED_OUT"


class _Streams:
    """One COPY per table, each on its own connection, fed chunk by chunk: the server parses and indexes
    the rows on another core while this process generates the next chunk (a writer thread sends them),
    and memory stays bounded at any size."""

    def __init__(self, cluster: PostgresCluster, dbname: str, tables: tuple[str, ...]):
        self.cluster, self.dbname, self.tables = cluster, dbname, tables
        self.stack = ExitStack()
        self.copies: dict = {}

    def __enter__(self) -> _Streams:
        with ExitStack() as stack:  # closes what was opened when a later connection fails
            for table in self.tables:
                conn = stack.enter_context(self.cluster.connect(self.dbname))
                cur = stack.enter_context(conn.cursor())
                self.copies[table] = stack.enter_context(
                    cur.copy(f"COPY {table} FROM STDIN", writer=QueuedLibpqWriter(cur)))
            self.stack = stack.pop_all()
        return self

    def write(self, rows: dict[str, list[str]]) -> None:
        """Send and forget the rows gathered so far."""
        for table, copy in self.copies.items():
            if rows[table]:
                copy.write(("\n".join(rows[table]) + "\n").encode())
                rows[table].clear()

    def __exit__(self, *exc) -> None:
        self.stack.__exit__(*exc)  # ends each COPY, then commits (or rolls back on an error)


def _copy(conn, table: str, rows: list[str]) -> None:
    if not rows:
        return
    with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as cp:
        for i in range(0, len(rows), 20000):
            cp.write(("\n".join(rows[i:i + 20000]) + "\n").encode())


def row_counts(cluster: PostgresCluster, dbname: str = "tos") -> dict[str, int]:
    """`{table: row_count}` for every TOS table."""
    sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
    counts = dict(cluster.psql(sql, dbname))
    return {t: int(counts[t]) for t in TABLES}


def create_tos_database(cluster: PostgresCluster, dbname: str = "tos", containers: int = 100_000,
                        seed: int = 7) -> dict[str, int]:
    """Create database `dbname` with the TOS schema and deterministic data; return `{table: row_count}`."""
    cluster.psql(f'DROP DATABASE IF EXISTS "{dbname}"')
    cluster.psql(f'CREATE DATABASE "{dbname}"')
    b = _Builder(random.Random(seed))
    calls = _vessels(b)
    end = BASE + timedelta(days=HISTORY_DAYS)
    with cluster.connect(dbname) as conn:
        conn.execute(SCHEMA)
        for table in TABLES[:2]:  # vessels and their calls: small, and committed before anything refers to them
            _copy(conn, table, b.rows[table])
    with _Streams(cluster, dbname, TABLES[2:]) as streams:
        for cid in range(1, containers + 1):
            _container(b, cid, calls, end)
            if cid % CHUNK == 0:
                streams.write(b.rows)
        streams.write(b.rows)
    with cluster.connect(dbname) as conn:
        conn.execute(INDEXES)
    cluster.psql("ANALYZE", dbname)
    return row_counts(cluster, dbname)


def advance_day(cluster: PostgresCluster, dbname: str = "tos", day: int = 1, seed: int = 7) -> dict[str, int]:
    """Apply day `day` (1, 2, ...) of normal operations: arrivals, yard moves, departures; return row counts.

    Deterministic for a given (seed, day) applied in order to the same starting database.
    """
    rng = random.Random(seed * 1_000_003 + day)
    today = BASE + timedelta(days=HISTORY_DAYS + day - 1)
    with cluster.connect(dbname) as conn:
        ids = _current_ids(conn)
        b = _Builder(rng, {"container_events": ids["events"] + 1, "gate_transactions": ids["gates"] + 1})
        call = _new_call(conn, rng, ids["calls"] + 1, today)
        yard = [r[0] for r in conn.execute("SELECT container_id FROM yard_inventory ORDER BY container_id")]
        n = max(1, ids["containers"] // 100)
        _arrivals(b, range(ids["containers"] + 1, ids["containers"] + 1 + n), call, today)
        moved = rng.sample(yard, min(len(yard), n))
        leaving = set(moved[: len(moved) // 2])
        _moves_and_departures(conn, b, moved, leaving, call, today)
        for table in TABLES:
            _copy(conn, table, b.rows[table])
        # the nightly housekeeping job: gate transactions are kept for PURGE_DAYS
        conn.execute("DELETE FROM gate_transactions WHERE txn_time < %s", (today - timedelta(days=PURGE_DAYS),))
    return row_counts(cluster, dbname)


def _current_ids(conn) -> dict[str, int]:
    row = conn.execute("SELECT (SELECT coalesce(max(id),0) FROM containers), (SELECT coalesce(max(id),0) FROM "
                       "container_events), (SELECT coalesce(max(id),0) FROM gate_transactions), "
                       "(SELECT coalesce(max(id),0) FROM vessel_calls)").fetchone()
    return dict(zip(("containers", "events", "gates", "calls"), row))


def _new_call(conn, rng: random.Random, call_id: int, today: datetime) -> tuple[int, datetime, datetime]:
    ata = today + timedelta(hours=rng.uniform(0, 6))
    atd = ata + timedelta(hours=rng.uniform(12, 20))
    vessel = conn.execute("SELECT id FROM vessels ORDER BY id OFFSET %s LIMIT 1",
                          (rng.randrange(conn.execute("SELECT count(*) FROM vessels").fetchone()[0]),)).fetchone()[0]
    conn.execute("INSERT INTO vessel_calls VALUES (%s,%s,%s,%s,%s,%s,%s)",
                 (call_id, vessel, f"{call_id:03d}{rng.choice('EW')}", f"B{rng.randint(1, 5)}", ata, ata, atd))
    return call_id, ata, atd


def _arrivals(b: _Builder, cids: range, call: tuple, today: datetime) -> None:
    r = b.rng
    for cid in cids:
        t = today + timedelta(hours=r.uniform(0, 20))
        if r.random() < 0.5:
            b.event(cid, "DISCHARGE", max(t, call[1]), "QC", call[0])
        else:
            b.event(cid, "GATE_IN", t, "GATE")
            b.gate(cid, "IN", t)
        slot = b.yard_slot()
        b.add("yard_inventory", cid, *slot, _ts(t))
        full = "F" if r.random() < 0.7 else "E"
        b.add("containers", cid, container_number(cid), r.choices(SIZE_TYPES, _SIZE_WEIGHTS)[0],
              OWNERS[cid % len(OWNERS)], r.choice(OWNERS), full, r.randint(2200, 30000), "IN_YARD", _ts(t), _ts(t))


def _moves_and_departures(conn, b: _Builder, moved: list[int], leaving: set[int], call: tuple,
                          today: datetime) -> None:
    r = b.rng
    for cid in moved:
        t = today + timedelta(hours=r.uniform(0, 23))
        if cid in leaving:
            status = _leave(b, cid, ("LOAD", call) if r.random() < 0.5 else ("GATE_OUT", None), min(t, call[2]))
            conn.execute("DELETE FROM yard_inventory WHERE container_id = %s", (cid,))
        else:
            slot, status = b.yard_slot(), "IN_YARD"
            b.event(cid, "YARD_MOVE", t, f"{slot[0]}-{slot[1]:02d}-{slot[2]:02d}-{slot[3]}")
            conn.execute("UPDATE yard_inventory SET block=%s, bay=%s, row_no=%s, tier=%s, since=%s "
                         "WHERE container_id=%s", (*slot, t, cid))
        conn.execute("UPDATE containers SET status=%s, updated_at=%s WHERE id=%s", (status, t, cid))
