"""`backupd evidence verify | export | pull | sync`: registered on the main command group."""

from __future__ import annotations

from pathlib import Path

import click

from backupd import output
from backupd.commands.common import common, load_config, load_policies
from backupd.errors import EXIT_FINDING, EXIT_OK


def _finish(doc: dict, as_json: bool, lines: list[str]) -> int:
    code = EXIT_OK if doc["ok"] else EXIT_FINDING
    if as_json:
        output.emit_json({**doc, "exit_code": code})
    else:
        for line in lines:
            output.note(line)
    return code


def _estate_lines(estate: dict) -> list[str]:
    lines = [f"estate report: {estate['files']['html']} ({len(estate['hosts'])} host(s), "
             f"{len(estate['sites'])} site(s))"]
    for site, hosts in estate["sites"].items():
        for name in hosts:
            h = estate["hosts"][name]
            c = h["conformance"]
            lines.append(f"  {site} / {name}: {'verified' if h['verified'] else 'NOT VERIFIED'}, conformance "
                         f"{c['met']} met, {c['not met']} not met, {c['not evidenced']} not evidenced; backups "
                         f"{h['backups_ok']} ok, {h['backups_failed']} failed; {h['generations']} generation(s); "
                         f"drills {h['drills_passed']}/{h['drills']} passed; {h['audits']} audit(s)")
    return lines


def register(main: click.Group) -> None:
    """Add this module's commands to main."""

    @main.group("evidence")
    def group() -> None:
        """Signed evidence ledger: export, offline verify, WORM mirror pull."""

    @group.command("verify")
    @click.argument("file", type=click.Path(path_type=Path))
    @click.option("--public-key", "public_keys", type=click.Path(path_type=Path), multiple=True,
                  help="Trusted Ed25519 public key (PEM), repeatable; default: the one in the bundle / beside the "
                       "ledger / the host's first key in the mirror.")
    @click.option("--keyring", type=click.Path(path_type=Path), default=None,
                  help="Roles and their keys (YAML/JSON): which role signed each drill and audit; with a verifier "
                       "role, drills signed by any other key are findings.")
    @click.option("--mirror", "mirror_dest", default=None,
                  help="Also compare with the WORM mirror in this policy destination (records, signed checkpoints); "
                       "a bundle's records must be the mirrored ones, none of its period left out.")
    @click.option("--host", default=None, help="With --mirror: the host's evidence (default: the ledger's host).")
    @click.option("--credentials", type=click.Path(path_type=Path), default=None,
                  help="With --mirror: read-only S3 credentials (default: secrets_dir/s3-auditor.env).")
    @click.option("--all-signatures", is_flag=True,
                  help="Check every record's signature (on all cores), not only those that authenticate the hash "
                       "chain: the first record, the head, checkpoints, key rotations, records at a broken link.")
    @common
    def verify(file, public_keys, keyring, mirror_dest, host, credentials, all_signatures, config_path, as_json):
        """Verify an export bundle or ledger offline: exit 0 intact, 1 tampered or incomplete."""
        from backupd.actions import evidence_verify

        if mirror_dest:
            from backupd.actions import evidence

            cfg = load_config(config_path)
            doc = evidence.verify_against_mirror(cfg, load_policies(cfg), file, mirror_dest, host, credentials,
                                                 list(public_keys), keyring, all_signatures)
        else:
            doc = evidence_verify.verify(file, list(public_keys), keyring, all_signatures=all_signatures)
        led = doc["ledger"]
        hosts = ", ".join(led["hosts"]) or "-"
        head = (f"{'INTACT' if doc['ok'] else 'NOT INTACT'}: {doc['file']} ({doc['type']}), records "
                f"seq {led['first_seq']}..{led['last_seq']} ({led['records']}), hosts {hosts}, "
                f"key {doc['key_fingerprint']} from {doc['key_source']}, {led['signatures_checked']} "
                f"signature(s) checked{' (all)' if all_signatures else ''}")
        lines = [head] + [f"  {a['kind']} #{a['seq']} {a['target'] or ''}: signed by role {a['role'] or 'unknown'} "
                          f"(key {a['kid']})" for a in doc["attestations"]]
        lines += [f"  note: {n}" for n in doc["notes"]]
        if doc["type"] == "bundle":
            m = doc["manifest"]
            lines.append(f"  period {m['since']} .. {m['until']} (exported {m['created']})")
        if doc.get("mirror"):
            m = doc["mirror"]
            lines.append(f"  WORM mirror {m['destination']} ({m['host']}): {m['records']} record(s), "
                         f"{m['checkpoints']} checkpoint(s)"
                         + (f", {m['identical']} of the bundle's records identical" if "identical" in m else ""))
        return _finish(doc, as_json, lines + [f"  problem: {p}" for p in doc["problems"]])

    @group.command("rotate-key")
    @click.option("--reason", default="", help="Why the key is rotated (recorded).")
    @common
    def rotate_key(reason, config_path, as_json):
        """New evidence signing key, introduced by a key-rotation record signed by the old and the new key."""
        from backupd.actions import evidence_keys

        cfg = load_config(config_path)
        load_policies(cfg)
        doc = evidence_keys.rotate(cfg, reason)
        return _finish(doc, as_json, [f"rotated the evidence signing key {doc['old_kid']} -> {doc['new_kid']} "
                                      f"(key-rotation record seq {doc['seq']}); publish {doc['public_key']}"])

    @group.command("acknowledge")
    @click.option("--reason", required=True, help="What was found and how the ledger was restored (recorded).")
    @common
    def acknowledge(reason, config_path, as_json):
        """After a head regression: check the restored ledger again and, when it is whole, record and reopen it.
        Also closes the finding of objects others planted in this host's mirror prefix."""
        from backupd.actions import evidence_keys

        cfg = load_config(config_path)
        load_policies(cfg)
        doc = evidence_keys.acknowledge(cfg, reason)
        planted = doc.get("foreign_objects") or []
        return _finish(doc, as_json, [f"ledger head regression acknowledged (record seq {doc['seq']}); appends "
                                      f"resume" if doc["acknowledged"] else "no open ledger head regression"] +
                       ([f"{len(planted)} foreign object(s) in this host's mirror prefix acknowledged"] if planted
                        else []))

    @group.command("export")
    @click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle to write (.tar.gz).")
    @click.option("--since", default=None, help="ISO 8601 start (default: now - evidence.audit_period, 1y).")
    @click.option("--until", default=None, help="ISO 8601 end (default: now).")
    @click.option("--keyring", type=click.Path(path_type=Path), default=None,
                  help="Roles and their keys (default: evidence.keyring): the report shows which role signed each "
                       "drill and audit and judges separation of duties.")
    @common
    def export(out, since, until, keyring, config_path, as_json):
        """Export records, public key, inventory and reports (JSON, CSV, HTML ja/en) as one bundle."""
        from backupd.actions import evidence

        cfg = load_config(config_path)
        doc = evidence.export(cfg, load_policies(cfg), out, since, until, keyring)
        lines = [f"wrote {doc['out']}: records seq {doc['first_seq']}..{doc['last_seq']} ({doc['records']}), "
                 f"sha256 {doc['sha256']}, key {doc['key_fingerprint']}"]
        lines += [f"  {k}: {v}" for k, v in doc["conformance"].items()]
        lines += [f"  ledger problem: {p}" for p in doc["ledger_problems"]]
        return _finish(doc, as_json, lines)

    @group.command("pull")
    @click.option("--destination", required=True, help="Policy destination holding the WORM mirror.")
    @click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Directory to write.")
    @click.option("--host", default=None, help="Only this host (default: every host in the bucket).")
    @click.option("--all-hosts", is_flag=True,
                  help="Every host, plus one estate report (estate.json/.csv/.html in --out): per site and host "
                       "the conformance items, generations, drills and audits, judged from the signed records.")
    @click.option("--credentials", type=click.Path(path_type=Path), default=None,
                  help="Read-only S3 credentials file (default: secrets_dir/s3-auditor.env).")
    @click.option("--keyring", type=click.Path(path_type=Path), default=None,
                  help="Roles and their keys: show which role signed each drill and audit.")
    @common
    def pull(destination, out_dir, host, all_hosts, credentials, keyring, config_path, as_json):
        """Rebuild ledgers from the Object-Lock bucket with auditor credentials and verify them."""
        from backupd.actions import evidence

        if all_hosts and host:
            raise click.UsageError("--all-hosts and --host exclude each other")
        cfg = load_config(config_path)
        policy_set = load_policies(cfg)
        doc = evidence.pull(cfg, policy_set, destination, out_dir, host, credentials, keyring)
        if all_hosts:
            from backupd.actions import estate

            doc["estate"] = estate.write(doc, policy_set, out_dir, keyring)
        lines = []
        for h in doc["hosts"]:
            lines.append(f"{h['host']}: {h['records']} records -> {h['ledger']} "
                         f"({'intact' if h['ok'] else 'NOT INTACT'}, key {h['key_fingerprint']}, "
                         f"{h['checkpoints']} checkpoint(s), last at seq {h['last_checkpoint'] or '-'})")
            lines += [f"  note: {n}" for n in h["notes"]] + [f"  problem: {p}" for p in h["problems"]]
        if doc.get("estate"):
            lines += _estate_lines(doc["estate"])
        return _finish(doc, as_json, lines or [f"no evidence found in s3://{doc['bucket']}/evidence/"])

    @group.command("key")
    @common
    def key(config_path, as_json):
        """Create this state_dir's Ed25519 signing key if missing; print its public key file and fingerprint."""
        from backupd.evidence import keys

        cfg = load_config(config_path)
        public = keys.load_or_create(cfg.state_dir).public_key()
        doc = {"ok": True, "role": cfg.role, "public_key": str(keys.key_dir(cfg.state_dir) / keys.PUB_NAME),
               "key_fingerprint": keys.fingerprint(public)}
        return _finish(doc, as_json, [f"{doc['role']} signing key {doc['key_fingerprint']}: publish "
                                      f"{doc['public_key']} to the auditors"])

    @group.command("sync")
    @common
    def sync(config_path, as_json):
        """Push records not yet mirrored to the WORM bucket (evidence.mirror)."""
        from backupd.actions import evidence

        cfg = load_config(config_path)
        load_policies(cfg)
        doc = evidence.sync(cfg)
        return _finish(doc, as_json, [f"mirrored {doc['pushed']} record(s) to {doc['destination']}; "
                                      f"{doc['pending']} pending"])
