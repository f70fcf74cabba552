"""Offline verification of a ledger: chain, order, signatures, truncation. Names the bad record.

Input: the ledger's lines (a list, or a ledger.LineFile streamed from disk), the trusted public key(s)
and optionally a keyring (roles). Output: a `ChainReport` listing every problem with the seq it
concerns; `ok` only when there is none. Key changes are accepted only through key-rotation records
(signed by the old key, carrying a proof by the new one); `check_checkpoints` compares a ledger with
signed checkpoints from the WORM mirror.

Which signatures are checked: every record's signature covers `prev`, the SHA-256 of the line before
it, so one valid signature on record N authenticates the exact bytes of every record before it
through the chain (docs/auditor-guide.md, "Why verify does not check every signature"). Verify hashes
every line and checks every link, seq and key id without parsing the records' data
(record_format.scan), and checks signatures where they matter: the first record, the head, the records
at signed checkpoints, each key-rotation record and its neighbours, and the records on both sides of
any broken link (so a changed record is named by its own bad signature). `all_signatures` checks
every record in full (signatures.py, on all cores).

Host identity: a ledger is one host's (its mirror prefix, or its first record's host), so a record
claiming another host is a finding even without a keyring; with one, every record's host must be one
its signing key's role is bound to (keyring `hosts`, else the host of the first record the key signed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field

from backupd.errors import ConfigError
from backupd.evidence import keys, record_format

#: Kinds whose signer the report shows ("which role attested each drill and audit").
ATTESTED = ("drill", "check", "storage_audit")
_ATTESTED_B = frozenset(k.encode() for k in ATTESTED)
_ROTATION_B = record_format.ROTATION.encode()
#: Records claiming another host named one by one; beyond this, one finding counts the rest.
HOSTS_NAMED = 20


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
    host: str | None = None  # the host the ledger belongs to (expected, or its first record's)
    notes: list[str] = field(default_factory=list)  # how the verify reasoned, not findings
    kinds: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    head: str | None = None  # hash of the last good line: what the next record must chain to
    epochs: list[dict] = field(default_factory=list)       # [{kid, from_seq}]: the ledger's keys in order
    attestations: list[dict] = field(default_factory=list)  # with a keyring: who signed drills, checks, audits
    trusted_keys: dict = field(default_factory=dict)        # kid -> public key (pinned or vouched by rotation)
    line_count: int = 0                                     # complete lines read
    line_hashes: dict = field(default_factory=dict)         # line number -> hash, at the checkpoints' seqs
    signatures_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.records > 0

    def to_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "hosts": self.hosts, "host": self.host, "notes": self.notes, "kinds": self.kinds, "head_sha256": self.head,
                "problems": [{"seq": p.seq, "message": p.message} for p in self.problems], "keys": self.epochs,
                "attestations": self.attestations, "signatures_checked": self.signatures_checked,
                "first_bad_seq": next((p.seq for p in self.problems), None)}


def verify_lines(lines, public_keys: list, *, first_seq: int = 1, first_prev: str = record_format.GENESIS,
                 torn_tail: bool = False, keyring=None, all_signatures: bool = False,
                 checkpoint_seqs=(), host: str | None = None) -> ChainReport:
    """Check lines (a list without newlines, or a ledger.LineFile) against the trusted keys and roles.

    first_seq/first_prev describe where a slice starts (an export may hold seq 40..90). torn_tail
    says the last list item had no newline: a record cut off by truncation (a LineFile knows it
    itself). checkpoint_seqs: seqs of signed checkpoints; their records' signatures are checked and
    their line hashes kept for check_checkpoints. all_signatures: check every record's signature.
    host: whose ledger this is (the mirror prefix it was pulled from, a bundle's manifest); default:
    the first record's host. A record claiming another host is a finding.
    """
    trust = _Trust(public_keys, keyring)
    report = ChainReport()
    torn = None
    if isinstance(lines, list) and torn_tail and lines:
        lines, torn = lines[:-1], lines[-1]
    scan = _Scan(lines, first_seq, first_prev, trust, report, {s - first_seq + 1 for s in checkpoint_seqs})
    scan.home = _raw(host) if host is not None else None
    scan.run()
    torn = torn if torn is not None else getattr(lines, "torn", None)
    if torn is not None:
        report.problems.append(Problem(scan.expected, f"truncated: the record after seq {scan.expected - 1} is "
                                                      f"cut off"))
    report.head = scan.prev.decode("ascii") if scan.number or torn is not None else None
    if not scan.number and torn is None:
        report.problems.append(Problem(None, "the ledger holds no records"))
    trust.settle(report)
    if all_signatures:
        from backupd.evidence import signatures

        found, report.signatures_checked = signatures.check_all(lines, trust.trusted_public(), scan.skip)
        report.problems += [Problem(seq, message) for seq, message in found]
    else:
        scan.check_kept()
    trust.finish(report)
    return report


class _Scan:
    """One streaming pass: line hashes, links, seqs, key ids, counts; the lines whose signature matters."""

    def __init__(self, source, first_seq: int, first_prev: str, trust: "_Trust", report: ChainReport, want: set):
        self.source, self.trust, self.report, self.want = source, trust, report, want
        self.expected, self.prev = first_seq, first_prev.encode("ascii")
        self.number = 0
        self.kept: dict[int, tuple[int, bytes]] = {}  # line number -> (seq, line): signatures to check
        self.skip: set[int] = set()  # line numbers already judged (damaged, wrong key): no signature check
        self.positions: dict[int, int] | None = None
        self.home: bytes | None = None  # the ledger's host, as its raw JSON string bytes
        self.foreign: list[int] = []    # seqs of records claiming another host

    def run(self) -> None:
        """The hot loop: one SHA-256 and one split per line (record_format.scan, inlined); anything
        unusual goes to the slow paths. kinds and hosts are counted as their raw JSON string bytes."""
        sha256, kept, want, rep = hashlib.sha256, self.kept, self.want, self.report
        trust, ring = self.trust, self.trust.keyring is not None
        kinds: dict[bytes, int] = {}
        hosts: dict[bytes, None] = {}
        expected, prev, number, last, last_seq, after = self.expected, self.prev, 0, None, 0, False
        current, trusted, home = b"", False, self.home
        for line in self.source:
            number += 1
            digest = sha256(line).hexdigest().encode()
            parts = line.rsplit(b',"', 7)
            try:
                if len(parts) != 8:
                    raise ValueError
                seq, kind, kid, link = int(parts[5][5:]), parts[3][7:-1], parts[2][6:-1], parts[4][7:-1]
                host = parts[1][7:-1]
            except ValueError:
                fields = self._full_scan(line, number, expected)
                if fields is None:  # damaged: named; its neighbours' signatures are checked
                    self._keep_around(number, last_seq, last)
                    after, expected, prev, last, last_seq = True, expected + 1, digest, line, expected
                    continue
                seq, kind, kid, link, host = fields
            if after:
                kept[number], after = (seq, line), False
            if seq != expected or link != prev:
                self._broken(number, seq, expected, link, prev)
                self._keep_around(number, last_seq, last)
                kept[number], after = (seq, line), True
            target = None
            if kid != current or kind == _ROTATION_B or (ring and kind in _ATTESTED_B):
                current, trusted, target = self._rare(line, number, seq, kind, kid)
                if kind == _ROTATION_B:
                    self._keep_around(number, last_seq, last)
                    kept[number], after = (seq, line), True
            elif not trusted:  # a key no pinned key vouches for yet: a later rotation record may
                trust.deferred.append((seq, kid))
            if host != home:
                home = self._host(seq, host)
            if ring:
                trust.signed.append((seq, kind, kid, target, host))
            kinds[kind] = kinds.get(kind, 0) + 1
            if host not in hosts:
                hosts[host] = None
            if number in want:
                kept[number] = (seq, line)
                rep.line_hashes[number] = digest.decode()
            if number == 1:
                kept[1], rep.first_seq = (seq, line), seq
            expected, prev, last, last_seq = seq + 1, digest, line, seq
        if last is not None and number not in self.skip:
            kept[number] = (last_seq, last)  # the head
        self.number, self.expected, self.prev = number, expected, prev
        rep.records = sum(kinds.values())
        rep.last_seq = last_seq if rep.records else None
        rep.line_count = number
        rep.kinds = {_text(k): n for k, n in kinds.items()}
        rep.hosts = list(dict.fromkeys(_text(h) for h in hosts))
        rep.host = _text(home) if home is not None else None
        if len(self.foreign) > HOSTS_NAMED:
            rep.problems.append(Problem(self.foreign[HOSTS_NAMED], f"{len(self.foreign) - HOSTS_NAMED} more "
                                        f"record(s) from here on claim a host other than {rep.host} (not named "
                                        f"one by one)"))

    def _host(self, seq: int, host: bytes) -> bytes:
        """The ledger's host: the expected one, else the first record's. Key rotations keep it: a ledger
        is one host's, so a record claiming another was written in that host's name by this one."""
        if self.home is None:
            self.home = host
        else:
            self.foreign.append(seq)
            if len(self.foreign) <= HOSTS_NAMED:
                self.report.problems.append(Problem(seq, f"claims host {_text(host)} in a ledger of host "
                                                         f"{_text(self.home)}"))
        return self.home

    def _full_scan(self, line: bytes, number: int, expected: int) -> tuple | None:
        """Fields through the full parser (an escaped host or kind, or a damaged line: then None, named)."""
        try:
            rec = record_format.parse(line)
        except ValueError as exc:
            self.report.problems.append(Problem(expected, f"line {number} is damaged: {exc}"))
            self.skip.add(number)
            return None
        return rec["seq"], _raw(rec["kind"]), _raw(rec["kid"]), rec["prev"].encode(), _raw(rec["host"])

    def _keep_around(self, number: int, last_seq: int, last: bytes | None) -> None:
        if last is not None and number - 1 not in self.skip:
            self.kept[number - 1] = (last_seq, last)

    def _broken(self, number: int, seq: int, expected: int, link: bytes, prev: bytes) -> None:
        problems = self.report.problems
        if seq > expected:
            where = self._position(expected)
            why = f"out of order (it is on line {where})" if where else "missing (deleted)"
            problems.append(Problem(expected, f"found seq {seq} where seq {expected} was expected: "
                                              f"record {expected} is {why}"))
        elif seq < expected:
            problems.append(Problem(seq, f"found seq {seq} where seq {expected} was expected: "
                                         f"record {seq} is repeated, inserted or out of order"))
        if link != prev:
            problems.append(Problem(seq, "chain broken: prev does not match the SHA-256 of the record before it"
                                         " (a record before it was changed, removed or inserted)"))

    def _position(self, seq: int) -> int | None:
        """The line holding seq, read leniently (to tell a moved record from a deleted one), mapped on first use."""
        if self.positions is None:
            self.positions = {}
            for number, line in enumerate(self.source, 1):
                fields = record_format.scan(line)
                if fields is None:
                    try:
                        fields = (int(record_format.parse(line)["seq"]),)
                    except ValueError:
                        continue
                self.positions.setdefault(fields[0], number)
        return self.positions.get(seq)

    def _rare(self, line: bytes, number: int, seq: int, kind: bytes, kid: bytes) -> tuple:
        """Key change, rotation, untrusted key or a keyring's attested kind: the record through _Trust.

        Returns the current kid and whether it is trusted (what the hot loop compares the next records
        with) and the record's data.target (attested kinds)."""
        rec = None
        if kind == _ROTATION_B or (self.trust.keyring is not None and kind in _ATTESTED_B):
            try:
                rec = record_format.parse(line)
            except ValueError as exc:
                self.report.problems.append(Problem(seq, f"line {number} is damaged: {exc}"))
                self.skip.add(number)
        if not self.trust.check(seq, _text(kind), _text(kid), rec, self.report):
            self.skip.add(number)  # signed by a key that may not sign here: no signature to judge
        now = self.trust.current
        data = rec.get("data") if rec else None
        target = data.get("target") if isinstance(data, dict) else None
        return (now or "").encode("ascii", "replace"), now in self.trust.trusted, target

    def check_kept(self) -> None:
        """The signatures that matter (see the module docstring), each record parsed in full."""
        for number in sorted(self.kept):
            if number in self.skip:
                continue
            seq, line = self.kept[number]
            try:
                rec = record_format.parse(line)
            except ValueError as exc:
                self.report.problems.append(Problem(seq, f"line {number} is damaged: {exc}"))
                continue
            key = self.trust.keys.get(rec["kid"]) if rec["kid"] in self.trust.trusted else None
            if key is None:
                continue  # untrusted: named by _Trust.settle
            self.report.signatures_checked += 1
            if not record_format.signature_ok(rec, key):
                self.report.problems.append(Problem(rec["seq"], "signature does not verify: the record was "
                                                                "changed after signing"))


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
        self.deferred: list[tuple] = []  # (seq, kid) of records whose key is not trusted (yet)
        self.signed: list[tuple] = []    # (seq, kind, kid, target, host) when a keyring judges roles

    def check(self, seq: int, kind: str, kid: str, rec: dict | None, report: ChainReport) -> bool:
        """Key continuity of one record (rec: parsed, for a rotation); False when its key may not sign here."""
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
            return False
        if kid not in self.trusted:
            self.deferred.append((seq, kid))
        if kind == record_format.ROTATION and rec is not None:
            self._rotate(rec, report)
        return True

    def trusted_public(self) -> dict:
        return {kid: self.keys[kid] for kid in self.trusted if kid in self.keys}

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

    def ring_kid(self, kid: str) -> str | None:
        """The keyring key kid is, or is linked to by rotation records."""
        return next((k for k in self.groups.get(kid, {kid}) if k in self.keyring.role_of), None)

    def role(self, kid: str) -> str | None:
        found = self.ring_kid(kid)
        return self.keyring.role_of[found] if found else None

    def settle(self, report: ChainReport) -> None:
        """Records whose key no pinned key vouches for, even through the rotations that came later."""
        for seq, kid in self.deferred:
            kid = _text(kid) if isinstance(kid, bytes) else kid
            if kid not in self.trusted:
                report.problems.append(Problem(seq, f"signed by key {kid}, which is not the trusted key "
                                                    f"({', '.join(sorted(self.pinned)) or 'none'})"))

    def finish(self, report: ChainReport) -> None:
        if self.keyring is not None:
            self._roles(report)
            self._hosts(report)
        report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))  # stable: in seq order, as found
        report.epochs = self.epochs
        report.trusted_keys = self.trusted_public()

    def _roles(self, report: ChainReport) -> None:
        """Kinds each role may sign; drills attested by a verifier when the keyring has one."""
        ring = self.keyring
        for seq, kind, kid, target, _host in self.signed:
            kind, kid = _text(kind), _text(kid)
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


    def _hosts(self, report: ChainReport) -> None:
        """Each record's host must be one of its key's role's hosts (keyring `hosts`), else the host of the
        first record the key signed (said in a note). A record for another host than the ledger's is already
        named (_Scan._host); here a key signing its ledger's own host's records is judged, once per host."""
        bound: dict[str, tuple] = {}  # keyring kid -> (hosts, by what)
        wrong: dict[tuple, list[int]] = {}  # (keyring kid, host) -> seqs
        for seq, _kind, kid, _target, host in self.signed:
            kid, host = _text(kid), _text(host)
            ring_kid = self.ring_kid(kid)
            if ring_kid is None or host != report.host:
                continue
            if ring_kid not in bound:
                bound[ring_kid] = self._binding(ring_kid, seq, host, report)
            if host not in bound[ring_kid][0]:
                wrong.setdefault((ring_kid, host), []).append(seq)
        for (ring_kid, host), seqs in wrong.items():
            hosts, how = bound[ring_kid]
            more = f" (and {len(seqs) - 1} later record(s) for {host})" if len(seqs) > 1 else ""
            report.problems.append(Problem(seqs[0], f"claims host {host} but is signed by key {ring_kid} of role "
                                                    f"{self.keyring.role_of[ring_kid]}, which {how} binds to host(s) "
                                                    f"{', '.join(sorted(hosts))}{more}"))

    def _binding(self, ring_kid: str, seq: int, host: str, report: ChainReport) -> tuple:
        name = self.keyring.role_of[ring_kid]
        hosts = self.keyring.roles[name].hosts
        if hosts is not None:
            return hosts, "the keyring"
        report.notes.append(f"keyring role {name} names no hosts: key {ring_kid} is bound to host {host}, the host "
                            f"of the first record it signed (seq {seq}); add hosts: [...] to the role to pin it")
        return frozenset({host}), "its first record"


def _raw(value) -> bytes:
    """A string as the bytes between its quotes in canonical JSON (what the hot loop compares)."""
    return json.dumps(str(value), ensure_ascii=False)[1:-1].encode("utf-8", "backslashreplace")


def _text(raw: bytes) -> str:
    """The string whose canonical JSON quotes hold raw (escapes undone)."""
    if b"\\" not in raw:
        return raw.decode("utf-8", "replace")
    try:
        return json.loads(b'"' + raw + b'"')
    except ValueError:
        return raw.decode("utf-8", "replace")


def check_checkpoints(lines: list[bytes] | None, checkpoints: list[dict], report: ChainReport, first_seq: int = 1,
                      what: str = "the ledger") -> list[Problem]:
    """Each signed checkpoint must verify under a trusted key and match the ledger's record at its seq.

    lines None: the line hashes verify_lines kept (checkpoint_seqs) stand for the lines."""
    from backupd.evidence import checkpoint as cp_mod

    problems = []
    last = first_seq + (report.line_count if lines is None else len(lines)) - 1
    for cp in sorted(checkpoints, key=lambda c: (c["seq"], c["time"])):
        key = report.trusted_keys.get(cp["kid"])
        label = f"checkpoint of seq {cp['seq']} at {cp['time']}"
        if key is None or not cp_mod.signature_ok(cp, key):
            problems.append(Problem(cp["seq"], f"{label}: signature does not verify under a trusted key "
                                               f"(key {cp['kid']})"))
        elif cp["seq"] > last:
            problems.append(Problem(cp["seq"], f"{label}: {what} ends at seq {last}: records after it were cut "
                                               f"off or the ledger was rolled back"))
        elif cp["seq"] >= first_seq and _hash_at(lines, report, cp["seq"] - first_seq) != cp["head"]:
            problems.append(Problem(cp["seq"], f"{label}: record {cp['seq']} differs from the signed checkpoint "
                                               f"(the ledger was replaced or re-signed)"))
    return problems


def _hash_at(lines: list[bytes] | None, report: ChainReport, index: int) -> str | None:
    if lines is None:
        return report.line_hashes.get(index + 1)
    return record_format.line_hash(lines[index])
