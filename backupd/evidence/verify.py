"""Offline verification of a ledger: chain, order, signatures, truncation. Names the bad record.

Input: the ledger's lines, the trusted public key(s) and optionally a keyring (roles). Output: a
`ChainReport` listing every problem with the seq it concerns; `ok` only when there is none. Key
changes are accepted only through key-rotation records (signed by the old key, carrying a proof by
the new one); `check_checkpoints` compares a ledger with signed checkpoints from the WORM mirror.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from backupd.errors import ConfigError
from backupd.evidence import keys, record_format

#: Kinds whose signer the report shows ("which role attested each drill and audit").
ATTESTED = ("drill", "check", "storage_audit")


@dataclass
class Problem:
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.message}" if self.seq is not None else self.message


@dataclass
class ChainReport:
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    hosts: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    head: str | None = None  # hash of the last good line: what the next record must chain to
    epochs: list[dict] = field(default_factory=list)       # [{kid, from_seq}]: the ledger's keys in order
    attestations: list[dict] = field(default_factory=list)  # with a keyring: who signed drills, checks, audits
    trusted_keys: dict = field(default_factory=dict)        # kid -> public key (pinned or vouched by rotation)

    @property
    def ok(self) -> bool:
        return not self.problems and self.records > 0

    def to_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "hosts": self.hosts, "kinds": self.kinds, "head_sha256": self.head,
                "problems": [{"seq": p.seq, "message": p.message} for p in self.problems], "keys": self.epochs,
                "attestations": self.attestations,
                "first_bad_seq": next((p.seq for p in self.problems), None)}


def verify_lines(lines: list[bytes], public_keys: list, *, first_seq: int = 1,
                 first_prev: str = record_format.GENESIS, torn_tail: bool = False, keyring=None) -> ChainReport:
    """Check lines (without newlines) against the trusted keys (and the roles of a keyring).

    first_seq/first_prev describe where a slice starts (an export may hold seq 40..90). torn_tail
    says the last line had no newline: a record cut off by truncation. A ledger has one key at a
    time; it may change only through a key-rotation record signed by the old and the new key.
    """
    trust = _Trust(public_keys, keyring)
    report = ChainReport()
    positions = _Positions(lines)  # parsed only when a seq is out of place
    expected, prev = first_seq, first_prev
    for number, line in enumerate(lines, 1):
        if torn_tail and number == len(lines):
            report.problems.append(Problem(expected, f"truncated: the record after seq {expected - 1} is cut off"))
            break
        try:
            rec = record_format.parse(line)
        except ValueError as exc:
            report.problems.append(Problem(expected, f"line {number} is damaged: {exc}"))
            expected, prev = expected + 1, record_format.line_hash(line)
            continue
        _check(rec, expected, prev, trust, report, positions)
        _count(rec, report)
        expected, prev = rec["seq"] + 1, record_format.line_hash(line)
    report.head = prev if lines else None
    if not lines:
        report.problems.append(Problem(None, "the ledger holds no records"))
    trust.finish(report)
    return report


class _Positions:
    """seq -> line number, read leniently (to tell a moved record from a deleted one), built on first use."""

    def __init__(self, lines: list[bytes]):
        self.lines, self.map = lines, None

    def get(self, seq: int) -> int | None:
        if self.map is None:
            self.map = {}
            for number, line in enumerate(self.lines, 1):
                try:
                    self.map.setdefault(int(record_format.parse(line)["seq"]), number)
                except ValueError:
                    continue
        return self.map.get(seq)


def _check(rec: dict, expected: int, prev: str, trust: "_Trust", report: ChainReport, positions: _Positions) -> None:
    seq = rec["seq"]
    if seq > expected:
        where = positions.get(expected)
        why = f"out of order (it is on line {where})" if where else "missing (deleted)"
        report.problems.append(Problem(expected, f"found seq {seq} where seq {expected} was expected: "
                                                 f"record {expected} is {why}"))
    elif seq < expected:
        report.problems.append(Problem(seq, f"found seq {seq} where seq {expected} was expected: "
                                            f"record {seq} is repeated, inserted or out of order"))
    if rec["prev"] != prev:
        report.problems.append(Problem(seq, "chain broken: prev does not match the SHA-256 of the record before it"
                                            " (a record before it was changed, removed or inserted)"))
    trust.check(rec, report)


class _Trust:
    """Which keys are trusted, which key signs now, and the records whose key is not yet known.

    Keys are trusted when pinned (--public-key, keyring) or linked to a pinned key by key-rotation
    records. A record whose key is not (yet) trusted is checked at the end: a later rotation record
    may vouch for it (an auditor who pinned only the newest key).
    """

    def __init__(self, public_keys: list, keyring):
        self.keys = {keys.fingerprint(k): k for k in public_keys}
        self.keyring = keyring
        if keyring is not None:
            self.keys.update(keyring.keys)
        self.pinned = set(self.keys)
        self.groups = {kid: {kid} for kid in self.keys}
        self.trusted = set(self.pinned)
        self.current: str | None = None
        self.retired: dict[str, int] = {}
        self.epochs: list[dict] = []
        self.deferred: list[dict] = []
        self.signed: list[tuple] = []  # (seq, kind, kid, target) when a keyring judges roles

    def check(self, rec: dict, report: ChainReport) -> None:
        kid, seq = rec["kid"], rec["seq"]
        if self.keyring is not None:
            data = rec["data"] if isinstance(rec["data"], dict) else {}
            self.signed.append((seq, rec["kind"], kid, data.get("target")))
        if self.current is None:
            self.current = kid
            self.epochs.append({"kid": kid, "from_seq": seq})
        elif kid != self.current:
            if kid in self.retired:
                why = f"retired by the key-rotation record {self.retired[kid]}"
            else:
                why = (f"but the ledger's key is {self.current}: a key change without a key-rotation record "
                       f"(re-signed or forged)")
            report.problems.append(Problem(seq, f"signed by key {kid}, {why}"))
            return
        if kid in self.trusted:
            if not record_format.signature_ok(rec, self.keys[kid]):
                report.problems.append(Problem(seq, "signature does not verify: the record was changed after "
                                                    "signing"))
        else:
            self.deferred.append(rec)
        if rec["kind"] == record_format.ROTATION:
            self._rotate(rec, report)

    def _rotate(self, rec: dict, report: ChainReport) -> None:
        """A key-rotation record: signed by the current key, its data proves possession of the new key."""
        data = rec["data"] if isinstance(rec["data"], dict) else {}
        try:
            old = keys.load_public(str(data["old_public_key"]).encode("ascii", "replace"), "old_public_key")
            new = keys.load_public(str(data["new_public_key"]).encode("ascii", "replace"), "new_public_key")
            proof = base64.b64decode(str(data["new_key_signature"]), validate=True)
        except (KeyError, ConfigError, binascii.Error, ValueError):
            report.problems.append(Problem(rec["seq"], "key-rotation record is malformed (old/new public key or "
                                                       "new_key_signature missing or damaged)"))
            return
        old_kid, new_kid = keys.fingerprint(old), keys.fingerprint(new)
        statement = record_format.rotation_statement(rec["seq"], rec["prev"], rec["host"], rec["time"], old_kid,
                                                     new_kid)
        if old_kid != rec["kid"] or data.get("new_kid") != new_kid:
            report.problems.append(Problem(rec["seq"], "key-rotation record names keys that do not match its "
                                                       "signer or its new public key"))
        elif not keys.valid(new, proof, statement):
            report.problems.append(Problem(rec["seq"], f"key-rotation record is not signed by the new key {new_kid}"))
        else:
            self.keys.setdefault(old_kid, old)
            self.keys.setdefault(new_kid, new)
            self._link(old_kid, new_kid)
            self.retired[old_kid], self.current = rec["seq"], new_kid
            self.epochs.append({"kid": new_kid, "from_seq": rec["seq"] + 1})

    def _link(self, a: str, b: str) -> None:
        merged = self.groups.get(a, {a}) | self.groups.get(b, {b})
        for kid in merged:
            self.groups[kid] = merged
        if merged & self.pinned:
            self.trusted |= merged

    def role(self, kid: str) -> str | None:
        ring = self.keyring
        return next((ring.role_of[k] for k in self.groups.get(kid, {kid}) if k in ring.role_of), None)

    def finish(self, report: ChainReport) -> None:
        before = len(report.problems)
        for rec in self.deferred:
            kid = rec["kid"]
            if kid not in self.trusted:
                report.problems.append(Problem(rec["seq"], f"signed by key {kid}, which is not the trusted key "
                                                           f"({', '.join(sorted(self.pinned)) or 'none'})"))
            elif not record_format.signature_ok(rec, self.keys[kid]):
                report.problems.append(Problem(rec["seq"], "signature does not verify: the record was changed "
                                                           "after signing"))
        if self.keyring is not None:
            self._roles(report)
        if len(report.problems) > before:  # deferred findings belong in seq order
            report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
        report.epochs = self.epochs
        report.trusted_keys = {kid: self.keys[kid] for kid in self.trusted}

    def _roles(self, report: ChainReport) -> None:
        """Kinds each role may sign; drills attested by a verifier when the keyring has one."""
        ring = self.keyring
        for seq, kind, kid, target in self.signed:
            name = self.role(kid)
            role = ring.roles.get(name) if name else None
            if role is not None and not role.may_sign(kind):
                report.problems.append(Problem(seq, f"{kind} record signed by role {name} (key {kid}), which the "
                                                    f"keyring does not allow to sign {kind} records"))
            elif kind == "drill" and ring.has_verifier and not (role and role.verifier):
                report.problems.append(Problem(seq, f"drill record signed by {('role ' + name) if name else 'key'} "
                                                    f"{'(key ' + kid + ')' if name else kid}, not by a verifier key: "
                                                    f"the drill is not independently attested"))
            if kind in ATTESTED:
                report.attestations.append({"seq": seq, "kind": kind, "target": target, "kid": kid, "role": name,
                                            "verifier": bool(role and role.verifier)})


def _count(rec: dict, report: ChainReport) -> None:
    report.records += 1
    report.first_seq = rec["seq"] if report.first_seq is None else report.first_seq
    report.last_seq = rec["seq"]
    if rec["host"] not in report.hosts:
        report.hosts.append(rec["host"])
    report.kinds[rec["kind"]] = report.kinds.get(rec["kind"], 0) + 1


def check_checkpoints(lines: list[bytes], checkpoints: list[dict], report: ChainReport, first_seq: int = 1,
                      what: str = "the ledger") -> list[Problem]:
    """Each signed checkpoint must verify under a trusted key and match the ledger's record at its seq."""
    from backupd.evidence import checkpoint as cp_mod

    problems = []
    last = first_seq + len(lines) - 1
    for cp in sorted(checkpoints, key=lambda c: (c["seq"], c["time"])):
        key = report.trusted_keys.get(cp["kid"])
        label = f"checkpoint of seq {cp['seq']} at {cp['time']}"
        if key is None or not cp_mod.signature_ok(cp, key):
            problems.append(Problem(cp["seq"], f"{label}: signature does not verify under a trusted key "
                                               f"(key {cp['kid']})"))
        elif cp["seq"] > last:
            problems.append(Problem(cp["seq"], f"{label}: {what} ends at seq {last}: records after it were cut "
                                               f"off or the ledger was rolled back"))
        elif cp["seq"] >= first_seq and record_format.line_hash(lines[cp["seq"] - first_seq]) != cp["head"]:
            problems.append(Problem(cp["seq"], f"{label}: record {cp['seq']} differs from the signed checkpoint "
                                               f"(the ledger was replaced or re-signed)"))
    return problems
