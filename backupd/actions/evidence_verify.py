"""`backupd evidence verify`: an export bundle or a raw ledger, offline or against the WORM mirror.

Trust comes from pinned public keys (`--public-key`, repeatable), a keyring (roles and the kinds
they may sign) or, against the mirror, the host's first key stored there. Against the mirror the
ledger must also hold every mirrored record byte for byte and match every signed checkpoint: this
is what detects a ledger cut off, rolled back or swapped for a re-signed one. A bundle's report is
rebuilt from its records (evidence_report_check); against the mirror, its records must be the
mirrored ones and none of the mirror's records of its period may be left out (bundle_mirror).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from backupd.errors import ConfigError
from backupd.actions import evidence_report_check
from backupd.evidence import bundle, bundle_mirror, keyring as keyring_mod, keys
from backupd.evidence.ledger import LineFile, split_lines
from backupd.evidence.verify import Problem, check_checkpoints, verify_lines


def verify(path: Path, public_keys=(), keyring: Path | None = None, mirror_copy=None,
           checkpoints: list[dict] | None = None, all_signatures: bool = False, host: str | None = None,
           pull_mirror=None) -> dict:
    """Verify path; mirror_copy (mirror.PulledHost) adds the comparison with the WORM mirror,
    checkpoints (signed, from the mirror) must match the ledger at their seqs. A raw ledger is
    streamed from disk; all_signatures checks every record's signature (on all cores), not only the
    ones that authenticate the chain (verify.py). host: whose ledger it is (default: the mirror
    prefix it is compared with, else its first record's host); a record of another host is a finding.
    pull_mirror: host -> mirror.PulledHost, to compare a bundle with that host's WORM mirror."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    ring = keyring_mod.load(keyring) if keyring else None
    pinned = [keys.read_public(p) for p in public_keys]
    if bundle.is_bundle(path):
        return _bundle(path, pinned, ring, all_signatures, pull_mirror, host)
    source = "--public-key" if pinned else ("keyring" if ring else None)
    if not pinned and mirror_copy is not None and mirror_copy.public_key:
        pinned, source = [keys.read_public(mirror_copy.public_key)], "WORM mirror (the host's first key)"
    if not pinned and ring is None:
        beside = path.parent / keys.PUB_NAME
        if not beside.is_file():
            raise ConfigError(f"{path}: a raw ledger needs --public-key or --keyring (no {keys.PUB_NAME} beside it)")
        pinned, source = [keys.read_public(beside)], str(beside)
    lines = LineFile(path)
    cps = mirror_copy.checkpoints if mirror_copy is not None else (checkpoints or [])
    if host is None and mirror_copy is not None:
        host = mirror_copy.host  # records under evidence/<host>/ are that host's, whatever they claim
    chain = verify_lines(lines, pinned, keyring=ring, all_signatures=all_signatures,
                         checkpoint_seqs={c["seq"] for c in cps}, host=host)
    problems = list(chain.problems)
    if mirror_copy is not None:
        problems += compare_with_mirror(lines, mirror_copy, chain)
    elif checkpoints:
        problems += check_checkpoints(None, checkpoints, chain, what="the mirrored ledger")
    return _doc(path, "ledger", chain, problems, source, pinned, None)


def _bundle(path: Path, pinned: list, ring, all_signatures: bool, pull_mirror, host: str | None) -> dict:
    """An export bundle: its manifest and chain, its report rebuilt from its records and, with
    pull_mirror, every record and checkpoint against the host's WORM mirror (bundle_mirror)."""
    members = bundle.read(path)
    rep = bundle.verify(members, pinned, ring, all_signatures=all_signatures)
    lines = split_lines(members.get(bundle.LEDGER, b""))
    problems = rep.problems + rep.chain.problems + evidence_report_check.check(members, rep.manifest, lines)
    compared = None
    if pull_mirror is not None:
        named = rep.manifest.get("host")
        host = host or (named if isinstance(named, str) and named else None) or next(iter(rep.chain.hosts), None)
        if not host:
            raise ConfigError(f"{path}: cannot tell whose evidence it is; pass --host")
        compared = bundle_mirror.compare(pull_mirror(host), lines, rep.manifest, rep.chain)
        problems += compared.problems
    doc = _doc(path, "bundle", rep.chain, problems, rep.key_source, pinned, rep.manifest.get("key_fingerprint"))
    doc["manifest"] = {k: rep.manifest.get(k) for k in ("host", "first_seq", "last_seq", "created", "since",
                                                        "until")}
    if compared is not None:
        doc["mirror"] = {"host": host, **compared.to_dict()}
    return doc


def compare_with_mirror(lines, got, chain) -> list[Problem]:
    """The ledger (a LineFile, after verify_lines) against the mirror's records and checkpoints
    (got: mirror.PulledHost); both files are streamed side by side."""
    problems = [Problem(None, f"WORM mirror: {p}") for p in got.problems]
    mirrored = LineFile(got.ledger) if got.ledger else []
    mine_n = theirs_n = differ = 0
    first = None
    for mine, copy in itertools.zip_longest(lines, mirrored):
        mine_n += mine is not None
        theirs_n += copy is not None
        if mine is not None and copy is not None and mine != copy:
            differ += 1
            first = first or mine_n
    if differ:
        problems.append(Problem(first, f"differs from the WORM mirror's copy ({differ} record(s) differ): the "
                                       f"ledger was replaced, edited or re-signed"))
    if mine_n < theirs_n:
        problems.append(Problem(mine_n + 1, f"the ledger ends at seq {mine_n} but the WORM mirror holds records up "
                                            f"to seq {theirs_n}: records were cut off or the ledger was rolled back"))
    problems += check_checkpoints(None, got.checkpoints, chain)
    return problems


def _doc(path: Path, kind: str, chain, problems: list, source, pinned: list, fingerprint) -> dict:
    fp = keys.fingerprint(pinned[0]) if pinned else (fingerprint or (chain.epochs[-1]["kid"] if chain.epochs else None))
    ledger = chain.to_dict()
    extra = [p for p in problems if p not in chain.problems]
    if extra:  # bundle and mirror findings join the chain's, the earliest named record first
        ledger["problems"] += [{"seq": p.seq, "message": p.message} for p in extra]
        ledger["first_bad_seq"] = min((p.seq for p in problems if p.seq is not None), default=None)
    return {"ok": not problems and chain.ok, "file": str(path), "type": kind, "key_source": source,
            "key_fingerprint": fp, "problems": [str(p) for p in problems], "ledger": ledger,
            "attestations": chain.attestations, "notes": chain.notes}
