"""The report inside an export bundle, rebuilt and compared: an edited report.json/.csv/.html is a finding.

The manifest's signature only says the host signed the bundle; root on the host holds that key and
can edit a report (a FAIL drill shown as passed) and sign again. So verify checks the report against
what the bundle itself proves:
- report.json's host, generation time, period and record range against the signed manifest;
- each target's backups and drills rebuilt from the bundle's records (period.read over its ledger with
  the manifest's period, as the export read it), the attestations against the records they name;
- the conformance items evaluated again from those, at the report's own generation time;
- report.csv and report.html rendered again from report.json, byte for byte.
What the records cannot tell is taken from report.json as it stands: the snapshot inventory (restic's
listing at export time), the keyring's roles, and the whole ledger's verify at export time.
"""

from __future__ import annotations

import json
from datetime import datetime

from backupd.actions import evidence_conformance, evidence_report
from backupd.evidence import period, record_format
from backupd.evidence.verify import ATTESTED, Problem
from backupd.render import evidence_html

JSON, CSV, HTML = "report.json", "report.csv", "report.html"
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError)


def check(members: dict[str, bytes], manifest: dict, lines: list[bytes]) -> list[Problem]:
    """Findings, each naming the report file; none when the bundle holds no report."""
    if JSON not in members:
        return [Problem(None, f"{n}: present without {JSON}, so it cannot be checked") for n in (CSV, HTML)
                if n in members]
    try:
        report = json.loads(members[JSON])
        if not isinstance(report, dict):
            raise ValueError("not a JSON object")
        problems = _header(report, manifest)
        problems += _records(report, manifest, lines)
        return problems + _renderings(report, members)
    except _MALFORMED as exc:
        return [Problem(None, f"{JSON}: not a report an export writes ({exc.__class__.__name__}: "
                              f"{str(exc)[:120]}): it was edited")]


def _differs(name: str, what: str, got, want) -> Problem:
    return Problem(None, f"{name}: {what} is {_short(got)} but {_short(want)} in the bundle's records/manifest "
                         f"(the report was edited)")


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


def _header(report: dict, manifest: dict) -> list[Problem]:
    led = report["ledger"]
    pairs = [("host", report["host"], manifest.get("host")),
             ("generated", report["generated"], manifest.get("created")),
             ("period", report["period"], {"since": manifest.get("since"), "until": manifest.get("until")})]
    pairs += [(f"ledger.{k}", led.get(k), manifest.get(k)) for k in ("records", "first_seq", "last_seq",
                                                                      "key_fingerprint")]
    return [_differs(JSON, what, got, want) for what, got, want in pairs if got != want]


def _records(report: dict, manifest: dict, lines: list[bytes]) -> list[Problem]:
    """Backups, drills, attestations and conformance against the bundle's records."""
    since, until = manifest.get("since"), manifest.get("until")
    tally = evidence_report.BackupTally()
    part = period.read(lines, since if isinstance(since, str) else "", until if isinstance(until, str) else "~",
                       evidence_report.RECORD_FIELDS, fold={"backup": (evidence_report.DATA_FIELDS, tally.add)})
    grouped = evidence_report.by_target(part.records)
    roles = {a["seq"]: a["role"] for a in report.get("attestations") or []}
    problems, targets = [], []
    for t in report["targets"]:
        want = _plain(evidence_report.activity(grouped, tally, t["name"]))
        if t.get("offline_rotations", []) != want["offline_rotations"]:
            problems.append(_differs(JSON, f"target {t['name']}: offline_rotations", t.get("offline_rotations"),
                                     want["offline_rotations"]))
        if t["backups"] != want["backups"]:
            problems.append(_differs(JSON, f"target {t['name']}: backups", t["backups"], want["backups"]))
        drills = [{k: v for k, v in d.items() if k != "attested_by"} for d in t["drills"]]
        if drills != want["drills"]:
            problems.append(_differs(JSON, f"target {t['name']}: drills", drills, want["drills"]))
        for d in t["drills"]:
            if d.get("attested_by") != roles.get(d["seq"]):
                problems.append(_differs(JSON, f"drill #{d['seq']}: attested_by", d.get("attested_by"),
                                         roles.get(d["seq"])))
        targets.append({**t, **want, "drills": [{**d, "attested_by": roles.get(d["seq"])} for d in want["drills"]]})
    problems += _others(report, grouped, tally)
    problems += _attestations(report, manifest, lines)
    problems += _conformance(report, targets, part.records)
    return problems


def _others(report: dict, grouped: dict, tally) -> list[Problem]:
    """Targets with records but outside the policy are listed with their activity; none is left out."""
    others = report.get("other_targets") or []
    problems = [_differs(JSON, f"other target {o['name']}", o, want) for o in others
                if o != (want := _plain({"name": o["name"], **evidence_report.activity(grouped, tally, o["name"])}))]
    listed = {t["name"] for t in report["targets"]} | {o["name"] for o in others}
    for name in sorted(evidence_report.recorded_targets(grouped, tally) - listed):
        problems.append(Problem(None, f"{JSON}: the bundle's records name target {name!r} but the report lists no "
                                      f"such target (dropped from the report: it was edited)"))
    return problems


def _attestations(report: dict, manifest: dict, lines: list[bytes]) -> list[Problem]:
    """Each attestation names a record of the bundle of its kind, signed by its key."""
    first, out = manifest.get("first_seq") or 1, []
    for a in report.get("attestations") or []:
        index = a["seq"] - first
        scanned = record_format.scan(lines[index]) if 0 <= index < len(lines) else None
        got = (scanned[1].decode(), scanned[2].decode()) if scanned else None
        if a["kind"] not in ATTESTED or got != (a["kind"], a["kid"]):
            out.append(_differs(JSON, f"attestation of record {a['seq']}", [a["kind"], a["kid"]],
                                list(got) if got else None))
    return out


def _conformance(report: dict, targets: list[dict], records: list[dict]) -> list[Problem]:
    """The items evaluated again, at the report's generation time, with its G4 (mirrored) as stated."""
    items = report["conformance"]
    mirrored = any(i["id"] == "G4" and i["status"] == evidence_conformance.MET for i in items)
    now = datetime.fromisoformat(report["generated"].replace("Z", "+00:00"))
    want = _plain(evidence_conformance.evaluate({**report, "targets": targets}, records, now, mirrored))
    got = {i["id"]: i for i in items}
    out = [_differs(JSON, f"conformance item {w['id']}", got.get(w["id"]), w) for w in want
           if got.get(w["id"]) != w]
    known = {w["id"] for w in want}
    return out + [_differs(JSON, f"conformance item {i}", got[i], None) for i in got if i not in known]


def _renderings(report: dict, members: dict[str, bytes]) -> list[Problem]:
    """report.csv and report.html as the export renders them from report.json."""
    ordered = _bucket_order(report)
    out = []
    for name, render in ((CSV, evidence_report.to_csv), (HTML, evidence_html.render)):
        if name in members and members[name] != render(ordered):
            out.append(Problem(None, f"{name}: differs from the report rendered again from {JSON} (edited)"))
    return out


def _bucket_order(report: dict) -> dict:
    """report.json sorts its keys; the renderings list generations by age in AGE_BUCKETS order."""
    labels = [label for label, _ in evidence_report.AGE_BUCKETS]
    for t in report["targets"]:
        for d in t["destinations"]:
            gens = d["generations"]
            d["generations"] = {**{k: gens[k] for k in labels if k in gens}, **gens}
    return report


def _plain(value):
    """value as report.json holds it (lists, not tuples; floats as JSON reads them back)."""
    return json.loads(json.dumps(value))
