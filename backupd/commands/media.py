"""`backupd media sync | verify`: registered on the main command group as the `media` group."""

from __future__ import annotations

from pathlib import Path

import click

from backupd import output
from backupd.commands.common import common, load_config, load_policies
from backupd.errors import EXIT_DEPENDENCY, EXIT_FINDING, EXIT_OK


def register(main: click.Group) -> None:
    """Add the media group to main."""

    @main.group()
    def media() -> None:
        """Offline copies on removable media of a rotation set."""

    @media.command()
    @click.option("--medium", "medium_name", default=None, help="Sync this medium of the set (default: the one "
                                                               "attached).")
    @click.option("--mountpoint", type=click.Path(path_type=Path), default=None,
                  help="The filesystem mounted here must be a medium of the set (as a udev/systemd unit passes it).")
    @common
    def sync(medium_name, mountpoint, config_path, as_json):
        """Copy every offline target's missing generations to the attached medium, read them back, record it."""
        from backupd.actions import media as action

        cfg = load_config(config_path, writes="media sync")
        result = action.sync(cfg, load_policies(cfg), medium_name, mountpoint)
        code = {"ok": EXIT_OK, "unavailable": EXIT_DEPENDENCY}.get(result["status"], EXIT_FINDING)
        if as_json:
            output.emit_json({"ok": code == EXIT_OK, "exit_code": code, **result})
            return code
        output.table(f"media sync: {result['medium']} ({result['destination']})",
                     ["target", "generations on medium", "newest", "copied now"],
                     [[name, t["generations"], t["newest_time"] or "-",
                       sum(c["target"] == name for c in result["copied"])] for name, t in result["targets"].items()])
        output.note(f"read-back (restic check --read-data): {result['read_back']}; "
                    f"{output.human_bytes(result.get('bytes_written', 0))} written; record #{result['seq']}")
        if result.get("error"):
            output.error(result["error"])
        output.note(action.detach_hint(result))
        return code

    @media.command()
    @click.argument("mountpoint", type=click.Path(path_type=Path))
    @click.option("--bundle", "bundles", multiple=True, type=click.Path(path_type=Path),
                  help="Offline: an export bundle of the backup host carried with the medium (repeatable; "
                       "instead of the WORM mirror).")
    @click.option("--public-key", "public_keys", multiple=True, type=click.Path(path_type=Path),
                  help="The backup host's pinned public key a --bundle must verify under (repeatable).")
    @click.option("--keyring", type=click.Path(path_type=Path), default=None,
                  help="A keyring a --bundle must verify under (default: evidence.keyring).")
    @click.option("--mirror", "mirror_name", default=None,
                  help="Destination whose WORM mirror holds the hosts' ledgers (default: evidence.mirror).")
    @common
    def verify(mountpoint, bundles, public_keys, keyring, mirror_name, config_path, as_json):
        """On the verifier terminal: read the medium back fully, compare its snapshots with what the backup
        host announced, judge its newest generations, sign a media-verify record."""
        from backupd.actions import media_verify as action

        cfg = load_config(config_path)
        result = action.verify(cfg, load_policies(cfg), mountpoint, list(bundles), list(public_keys), keyring,
                               mirror_name)
        code = EXIT_OK if result["status"] == "clean" else EXIT_FINDING
        if as_json:
            output.emit_json({"ok": code == EXIT_OK, "exit_code": code, **result})
            return code
        output.table(f"media verify: {result['medium']} ({result['destination']})",
                     ["host", "target", "newest", "judged against", "flags"],
                     [[j["host"], j["target"], j["newest"][:8], (j["reference"] or "-")[:8], len(j["flags"])]
                      for j in result["judgement"]])
        output.note(f"{len(result['snapshots'])} announced snapshot(s); read back: "
                    + (", ".join(f"{h} {r}" for h, r in result.get("read_data", {}).items()) or "-")
                    + f"; announcements from {result['source'] or '-'}; record #{result['seq']}")
        for note in result["notes"]:
            output.note(note)
        for finding in result["findings"]:
            output.error(finding["message"])
        output.note(f"medium {result['medium']}: " + ("clean" if code == EXIT_OK else
                    "FAILED: do not use it for a restore or the rotation until it checks clean"))
        return code
