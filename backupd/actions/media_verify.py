"""`backupd media verify MOUNTPOINT`: the check of an offline medium on the verifier terminal.

Runs with role: verifier (its own signing key, the removable destination's repository password, no S3 write
keys) and never writes to the medium: every restic call is a reading one with --no-lock and the cache in
state_dir (the medium may be mounted read-only). For each backup host of the verifier whose repository is
on the medium (media/layout.py) it

1. reads every pack back (`restic check --read-data`): damage is a finding;
2. screens the medium's snapshots against what the host announced in its verified ledger (pulled from the
   WORM mirror as drills do, announced_mirror.ledgers; or, on a terminal without network, an export bundle
   `--bundle` verified with the host's pinned key or a keyring): a snapshot is counted only when a
   media-sync record names it as a copy (or a backup record names it) and a backup record announced the
   original; anything else was planted and is a finding, as is a copy the last sync of this medium wrote
   and that is gone;
3. judges the newest generation of each target against the last clean one on the medium (analytics:
   mass encryption, renamed extensions, mass deletion; rows of dump targets), with the manifests the
   backup records announced and the content of the sampled changed files restored to state_dir/tmp;
4. signs a `media-verify` record: clean, or the findings. The verifier's `status` shows a medium whose
   newest check failed until a clean check.

The medium and the bundle are attacker input: ids, labels and texts are shown through text.printable.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from backupd import evidence
from backupd.actions import announced, announced_mirror, media
from backupd.actions.snapshot_choice import load_manifest
from backupd.config.loader import Config
from backupd.engine import check as restic_check
from backupd.engine import restore as restic_restore
from backupd.engine import snapshots as restic_snapshots
from backupd.engine.exitcodes import ResticError
from backupd.errors import BackupdError, ConfigError, Finding
from backupd.evidence.ledger import LEDGER_NAME, Ledger, evidence_dir, split_lines
from backupd.judgement import analytics
from backupd.media.layout import Layout
from backupd.text import printable

KIND = "media-verify"
#: a sampled file larger than this is not restored for its entropy (the sample reads 64 KiB of each)
SAMPLE_MAX_BYTES = 64 << 20
_GLOB = re.compile(r"([*?\[\\])")


@dataclass
class Known:
    """What one backup host's verified ledger says about snapshots."""

    backups: dict = field(default_factory=dict)  # announced data id -> (Announcement, its change facts)
    companions: dict = field(default_factory=dict)  # manifest companion id -> Announcement
    copies: dict = field(default_factory=dict)  # copy id on a medium -> {original, seq}
    suspect: set = field(default_factory=set)  # ids flagged suspect after their backup
    last_sync: dict | None = None  # the newest ok media-sync record's data for this medium


def parse(lines, host: str, uuid: str | None) -> Known:
    """Known from the lines of host's verified ledger; `uuid`: the medium whose last sync is wanted."""
    out = Known()
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("host") != host or not isinstance(rec.get("data"), dict):
            continue
        data = rec["data"]
        if rec.get("kind") == "backup":
            _backup(out, rec, host, data)
        elif rec.get("kind") == media.KIND:
            _sync(out, rec, data, uuid)
        elif rec.get("kind") == "suspect_snapshot":
            items = data.get("snapshots") if isinstance(data.get("snapshots"), list) else [data]
            out.suspect |= {i.get("snapshot_id") for i in items if isinstance(i, dict)}
    return out


def _backup(out: Known, rec: dict, host: str, data: dict) -> None:
    ann = announced.from_record(rec, host, data.get("target"))
    if ann is None:
        return
    facts = data.get("facts") if isinstance(data.get("facts"), dict) else {}
    change = facts.get("change") if isinstance(facts.get("change"), dict) else {}
    out.backups.setdefault(ann.snapshot_id, (ann, change))
    if ann.manifest_snapshot:
        out.companions.setdefault(ann.manifest_snapshot, ann)


def _sync(out: Known, rec: dict, data: dict, uuid: str | None) -> None:
    for item in data.get("copied") if isinstance(data.get("copied"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("snapshot_id"), str):
            out.copies.setdefault(item["snapshot_id"], {"original": item.get("original"), "seq": rec.get("seq")})
    if data.get("status") == "ok" and uuid and data.get("uuid") == uuid:
        out.last_sync = data


# --- where the announcements come from ---------------------------------------------------------------------

@contextlib.contextmanager
def mirrored(cfg: Config, policy_set, hosts: list[str], mirror_name: str | None):
    """host -> ledger lines (an iterable per host), pulled from the WORM mirror and verified."""
    with announced_mirror.ledgers(cfg, policy_set, hosts, mirror_name) as pulled:
        yield {host: path.read_bytes().splitlines() for host, path in pulled.items()}


def bundled(cfg: Config, bundles: list[Path], public_keys: list[Path], keyring: Path | None) -> dict:
    """host -> ledger lines of each export bundle, each verified as `evidence verify` does with the pinned
    keys or the keyring (a bundle's own key proves nothing); Finding when one does not verify."""
    from backupd.actions import evidence_verify
    from backupd.evidence import bundle as bundle_mod
    from backupd.evidence import settings

    keyring = keyring or settings.of(cfg).keyring
    if not public_keys and keyring is None:
        raise ConfigError("--bundle: pin the backup host's public key (--public-key) or give a keyring "
                          "(--keyring or evidence.keyring): a bundle's own key proves nothing")
    out: dict[str, list[bytes]] = {}
    for path in bundles:
        doc = evidence_verify.verify(path, list(public_keys), keyring)
        if not doc["ok"]:
            raise Finding(f"{path}: the bundle does not verify ({'; '.join(doc['problems'][:3])}): it cannot "
                          "say what the backup host announced")
        host = (doc.get("manifest") or {}).get("host")
        if host not in cfg.backup_hosts():
            raise ConfigError(f"{path}: a bundle of host {printable(str(host), 64)}, not one of hosts "
                              f"({', '.join(cfg.backup_hosts())})")
        out[host] = split_lines(bundle_mod.read(path).get(bundle_mod.LEDGER, b""))
    return out


# --- the check ---------------------------------------------------------------------------------------------

def verify(cfg: Config, policy_set, mountpoint: Path, bundles: list[Path] | None = None,
           public_keys: list[Path] | None = None, keyring: Path | None = None,
           mirror_name: str | None = None) -> dict:
    """Check the medium at mountpoint; returns the signed media-verify record's data (+ seq)."""
    if not cfg.verifier:
        raise ConfigError(f"media verify runs on the verifier terminal ({cfg.path} has no role: verifier): a "
                          "check by the host that wrote the medium proves nothing")
    attached = media.one(policy_set, mountpoint=mountpoint)
    fs = attached.fs
    out = {"destination": attached.destination, "medium": attached.medium.name, "uuid": fs.uuid,
           "label": fs.label, "device": fs.device, "mountpoint": str(fs.mountpoint), "read_only": fs.read_only,
           "hosts": [], "source": None, "snapshots": [], "judgement": [], "findings": [], "notes": []}
    if not fs.read_only:
        out["notes"].append(f"mounted read-write at {printable(str(fs.mountpoint), 200)}: nothing was written, "
                            "but mount a medium read-only to check it (mount -o ro)")
    hosts = [h for h in cfg.backup_hosts() if Layout(fs.mountpoint, h).repository.is_dir()]
    others = sorted(set(Layout(fs.mountpoint, cfg.host).hosts()) - set(hosts))
    if others:
        out["notes"].append("not checked (not among hosts): " + ", ".join(printable(h, 64) for h in others[:10]))
    if not hosts:
        _finding(out, "empty", None, "no repository of the hosts this verifier checks ("
                 + ", ".join(cfg.backup_hosts()) + ") is on the medium")
        return _sign(cfg, out)
    if bundles:
        ledgers, out["source"] = bundled(cfg, bundles, public_keys or [], keyring), "bundle: " + ", ".join(
            str(b) for b in bundles)
        missing = [h for h in hosts if h not in ledgers]
        for host in missing:
            _finding(out, "no-announcements", None, f"{host}: no bundle of this host was given")
        _check_hosts(cfg, policy_set, attached, [h for h in hosts if h in ledgers], ledgers, out)
    else:
        with mirrored(cfg, policy_set, hosts, mirror_name) as ledgers:
            out["source"] = "WORM mirror"
            _check_hosts(cfg, policy_set, attached, hosts, ledgers, out)
    return _sign(cfg, out)


def _sign(cfg: Config, out: dict) -> dict:
    out["status"] = "failed" if out["findings"] else "clean"
    rec = evidence.record(cfg, KIND, out)
    return {**out, "seq": rec["seq"]}


def _finding(out: dict, kind: str, snapshot_id: str | None, message: str) -> None:
    out["findings"].append({"kind": kind, "snapshot_id": snapshot_id, "message": message})


def _check_hosts(cfg: Config, policy_set, attached, hosts: list[str], ledgers: dict, out: dict) -> None:
    for host in hosts:
        out["hosts"].append(host)
        repo = media.repository(cfg, attached, host)
        try:
            result = restic_check.check(repo, read_data_subset="1/1")
            listing = restic_snapshots.list_snapshots(repo)
        except ResticError as exc:  # a repository restic cannot open or read: the medium failed (a record)
            out.setdefault("read_data", {})[host] = "unreadable"
            _finding(out, "damaged", None, f"{host}: {printable(str(exc), 300)}")
            continue
        out.setdefault("read_data", {})[host] = "ok" if result.ok else "damaged"
        if not result.ok:
            _finding(out, "damaged", None, f"{host}: restic check --read-data found damage: "
                     + printable(result.output.strip().splitlines()[-1] if result.output.strip() else "", 300))
        known = parse(ledgers[host], host, attached.fs.uuid)
        counted = _screen(host, listing, known, out)
        _missing(host, listing, known, out)
        _judge_all(cfg, policy_set, repo, host, counted, known, out)


def _screen(host: str, listing, known: Known, out: dict) -> list:
    """The medium's snapshots the host announced: [(snap, Announcement, "data"|"manifest")]; the rest
    are findings."""
    counted = []
    for snap in listing:
        copy = known.copies.get(snap.id)
        original = str(copy["original"]) if copy else snap.id
        ann, kind = (known.backups.get(original) or (None,))[0], "data"
        if ann is None:
            ann, kind = known.companions.get(original), "manifest"
        if ann is None or snap.host != host:
            why = ("a media-sync record names it, but no backup record announced its original"
                   if copy else "no backup or media-sync record of the host announced it")
            _finding(out, "unannounced", snap.id, f"{host}: snapshot {snap.short_id} ({snap.time.isoformat()}, "
                     f"host {printable(snap.host, 64)}) is on the medium but {why}: planted")
            continue
        counted.append((snap, ann, kind))
        out["snapshots"].append({"host": host, "snapshot_id": snap.id, "original": original, "kind": kind,
                                 "target": ann.target, "announced": ann.time, "backup_seq": ann.seq,
                                 "sync_seq": copy["seq"] if copy else None})
    for item in restic_snapshots.skipped_in(listing):
        _finding(out, "unreadable", None, f"{host}: a snapshot listed with a {item.why}: no record can announce it")
    return counted


def _missing(host: str, listing, known: Known, out: dict) -> None:
    """Copies the last verified sync of this medium wrote that are no longer on it."""
    if known.last_sync is None:
        return
    ids = {s.id for s in listing}
    for item in known.last_sync.get("copied") or []:
        sid = item.get("snapshot_id") if isinstance(item, dict) else None
        if isinstance(sid, str) and sid not in ids:
            _finding(out, "missing", sid, f"{host}: snapshot {printable(sid[:8], 8)}, copied here by the last sync "
                     "of this medium, is gone")


# --- the change judgement ----------------------------------------------------------------------------------

def _judge_all(cfg: Config, policy_set, repo, host: str, counted: list, known: Known, out: dict) -> None:
    """Per target: the newest generation against the last clean one before it on the medium."""
    listing = [snap for snap, _, _ in counted]
    by_target: dict[str, list] = {}
    for snap, ann, kind in counted:
        if kind == "data":
            by_target.setdefault(ann.target, []).append((ann.time, snap, ann))
    for target, gens in sorted(by_target.items()):
        gens.sort(key=lambda g: g[0])
        clean = [g for g in gens[:-1] if not _flagged(g[1], g[2], known)]
        row = {"host": host, "target": target, "newest": gens[-1][1].id, "reference": None, "flags": []}
        out["judgement"].append(row)
        if not clean:
            row["note"] = "no earlier clean generation on the medium: nothing to judge against"
            continue
        row["reference"] = clean[-1][1].id
        try:
            change = _change(cfg, policy_set, repo, (host, target), clean, gens[-1], listing, known)
        except BackupdError as exc:
            _finding(out, "judgement", gens[-1][1].id, f"{host}/{target}: cannot judge: {exc}")
            continue
        row["flags"], row["change"] = change["flags"], change
        for flag in change["flags"]:
            _finding(out, "suspect", gens[-1][1].id, f"{host}/{target}: newest generation "
                     f"{gens[-1][1].short_id} against the clean {clean[-1][1].short_id}: {flag}")


def _flagged(snap, ann, known: Known) -> bool:
    """A generation the backup host flagged (at backup time or after), or that is tagged suspect."""
    change = known.backups.get(ann.snapshot_id, (None, {}))[1]
    return bool(change.get("suspicious") or change.get("flags")) or ann.snapshot_id in known.suspect \
        or "suspect" in snap.tags


def _change(cfg: Config, policy_set, repo, which: tuple[str, str], clean: list, new, listing,
            known: Known) -> dict:
    """The Change of generation `new` against the last of `clean` (each (time, snap, Announcement)), as a
    dict; the clean ones' recorded changes say what is usual for the target."""
    (host, target), ref = which, clean[-1]
    ref_doc = load_manifest(repo, ref[1], target, host, listing, announcement=ref[2])
    new_doc = load_manifest(repo, new[1], target, host, listing, announcement=new[2])
    usual = analytics.clean_history([known.backups[a.snapshot_id][1] for _, _, a in clean
                                     if known.backups[a.snapshot_id][1]])
    rows, ref_rows = (new_doc.get("facts") or {}).get("rows"), (ref_doc.get("facts") or {}).get("rows")
    if isinstance(rows, dict) and isinstance(ref_rows, dict):
        spec = next((t for t in policy_set.targets if t.name == target), None)
        dump = getattr(getattr(spec, "sources", None), "dump", None)
        allowance = dict(dump.row_loss_allowance) if dump is not None else {}
        return analytics.judge_dump(rows, ref_rows, allowance).to_dict()
    prev = {e["path"]: e["sha256"] for e in ref_doc.get("files", []) if e.get("type") == "file"}
    cur = {e["path"]: (e["sha256"], e["size"]) for e in new_doc.get("files", []) if e.get("type") == "file"}
    with _scratch(cfg) as tmp:
        sample = [p for p in analytics.sample(analytics.changed_paths(prev, cur)) if cur[p][1] <= SAMPLE_MAX_BYTES]
        if sample:  # only the sampled files' content is needed; glob characters in names taken literally
            restic_restore.restore(repo, new[1].id, tmp, includes=[_GLOB.sub(r"\\\1", p) for p in sample])
        change = analytics.compare({_under(tmp, p): h for p, h in prev.items()},
                                   {_under(tmp, p): v for p, v in cur.items()})
    return analytics.judge(change, usual).to_dict()


def _under(root: Path, path: str) -> str:
    return str(root) + ("" if path.startswith("/") else "/") + path


@contextlib.contextmanager
def _scratch(cfg: Config):
    """A private directory under state_dir/tmp (the verifier's own disk), removed afterwards."""
    parent = Path(cfg.state_dir) / "tmp"
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="backupd-media-verify-", dir=parent) as tmp:
        yield Path(tmp)


# --- status ------------------------------------------------------------------------------------------------

def checks(state_dir: Path) -> list[dict]:
    """Per medium (uuid, else name) the newest media-verify record of this host's ledger: medium, time,
    status (clean|failed), finding count, seq; a failed medium stays failed until a clean check."""
    if not (evidence_dir(state_dir) / LEDGER_NAME).is_file():
        return []
    with Ledger(state_dir) as ledger:
        recs = ledger.query(kind=KIND)
    newest: dict[str, dict] = {}
    for rec in recs:
        data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
        key = str(data.get("uuid") or data.get("medium"))
        newest[key] = {"medium": data.get("medium"), "destination": data.get("destination"),
                       "uuid": data.get("uuid"), "label": data.get("label"), "time": rec.get("time"),
                       "status": data.get("status"), "findings": len(data.get("findings") or []),
                       "seq": rec.get("seq")}
    return sorted(newest.values(), key=lambda c: str(c["medium"]))
