"""`backupd keys init|escrow|recover|rotate`: repository passwords over their whole life.

Escrow files live in state_dir/escrow/<destination>.json and, for S3 destinations, beside the
repository at <path>/.backupd-escrow/ (Object Lock keeps them). They hold no usable secret without
the offline recovery private key."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import ClientError

from backupd import evidence
from backupd.actions.audit import s3_client
from backupd.actions.common import repository
from backupd.config.loader import Config
from backupd.engine import init as restic_init
from backupd.engine import key as restic_key
from backupd.engine.exitcodes import WrongPassword
from backupd.errors import BackupdError, ConfigError, DependencyError
from backupd.evidence import settings as evidence_settings
from backupd.keys import escrow as sealing
from backupd.keys import password
from backupd.policy.lint import lint_paths
from backupd.policy.schema import S3Destination
from backupd.storage import client, escrow_copies, lockconfig
from backupd.storage.evidence_objects import ESCROW_DIR


def _read_key_file(path: Path, loader):
    try:
        return loader(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read key file ({exc.strerror})") from None
    except sealing.EscrowError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _escrow_key(dest: S3Destination, name: str) -> str:
    return f"{dest.path}/{ESCROW_DIR}/{name}.json"


def init(cfg: Config) -> list[dict]:
    """Generate missing password files (0600). Bootstrap: the policy need not be lint-clean yet,
    since a missing password file is itself a lint error."""
    loaded = lint_paths(cfg.policy_files(), cfg.secrets_dir).policies
    destinations = {n: d for lp in loaded if lp.policy for n, d in lp.policy.destinations.items()}
    if not destinations:
        raise ConfigError("no valid policy file declares destinations; run backupd policy lint")
    results = []
    for name, dest in destinations.items():
        created = password.ensure(dest.password_file)
        results.append({"destination": name, "status": "ok", "password_file": str(dest.password_file),
                        "created": created})
    evidence.record(cfg, "keys_init", {"destinations": results})
    return results


def _mirror(dest, name: str, envelope: dict, until: datetime) -> bool:
    """PUT the envelope beside the repository, locked COMPLIANCE until `until` (evidence.retention)."""
    if not isinstance(dest, S3Destination):
        return False
    with client.reachable(f"mirror escrow of {name}"):
        s3_client(dest).put_object(Bucket=dest.bucket, Key=_escrow_key(dest, name),
                                   Body=json.dumps(envelope, indent=1).encode(), **lockconfig.compliance(until))
    return True


def escrow(cfg: Config, policy_set, public_key_file: Path) -> list[dict]:
    """Seal each destination's password to the recovery key; write locally and mirror to the bucket."""
    public = _read_key_file(public_key_file, sealing.load_public)
    until = evidence_settings.retain_until(cfg)
    results = []
    for name, dest in policy_set.destinations.items():
        out = {"destination": name, "status": "failed", "recipient": sealing.fingerprint(public)}
        try:
            envelope = sealing.seal(password.read(dest.password_file).encode(), public, name)
        except OSError as exc:
            results.append({**out, "error": f"{dest.password_file}: {exc.strerror}"})
            continue
        path = cfg.state_dir / "escrow" / f"{name}.json"
        password.write_secret_file(path, json.dumps(envelope, indent=1))
        out.update(file=str(path), algorithm=sealing.ALGORITHM)
        try:
            out.update(mirrored=_mirror(dest, name, envelope, until), status="ok")
        except DependencyError as exc:
            out.update(status="unavailable", error=str(exc))
        except ClientError as exc:
            out["error"] = f"mirroring refused: {client.error_code(exc)}"
        results.append(out)
    evidence.record(cfg, "keys_escrow", {"destinations": results})
    return results


def _envelopes(cfg: Config, name: str, dest, unusable: list[str]):
    """(envelope, source) candidates: the local copy, then every bucket version, oldest locked first.

    A copy that cannot be read is named in unusable and skipped; a writer's garbage version or delete
    marker on top of the escrow object must not block recovery after the host is lost."""
    path = cfg.state_dir / "escrow" / f"{name}.json"
    if path.exists():
        try:
            yield json.loads(path.read_text()), "local"
        except (OSError, ValueError) as exc:
            unusable.append(f"local {path}: unreadable ({exc.__class__.__name__})")
    if not isinstance(dest, S3Destination):
        if not path.exists():
            raise ConfigError(f"{name}: no escrow file at {path}")
        return
    s3, key = s3_client(dest), _escrow_key(dest, name)
    with client.reachable(f"read escrow of {name}"):
        found, markers = escrow_copies.copies(s3, dest.bucket, key, datetime.now(timezone.utc))
    unusable.extend(f"bucket {m}: skipped" for m in markers)
    for copy in found:
        try:
            with client.reachable(f"read escrow of {name}"):
                doc = escrow_copies.read(s3, dest.bucket, key, copy)
        except (ValueError, ClientError) as exc:
            unusable.append(f"bucket version {copy.version_id}: {_why(exc)}")
            continue
        yield doc, f"bucket version {copy.version_id}" + (" (locked)" if copy.locked_until else "")


def _why(exc: Exception) -> str:
    return f"refused ({client.error_code(exc)})" if isinstance(exc, ClientError) else str(exc)


def _recover_one(cfg: Config, name: str, dest, private, out_dir: Path | None) -> dict:
    """Try every escrow copy until one opens the repository; name the copies that could not be used."""
    out = {"destination": name, "status": "failed", "opens": False}
    unusable: list[str] = []
    for envelope, source in _envelopes(cfg, name, dest, unusable):
        try:
            secret = sealing.open_envelope(envelope, private)
            opens = _opens(cfg, name, dest, secret)
        except WrongPassword:
            opens = False
        except (sealing.EscrowError, UnicodeDecodeError) as exc:
            unusable.append(f"{source}: {exc if isinstance(exc, sealing.EscrowError) else 'not a password'}")
            continue
        if not opens:
            unusable.append(f"{source}: its password does not open the repository")
            continue
        if out_dir is not None:
            password.write_secret_file(Path(out_dir) / f"{name}.password", secret.decode() + "\n")
        out.update(status="ok", opens=True, source=source)
        break
    else:
        out["error"] = "no escrow copy opens the repository"
    if unusable:
        out["unusable"] = unusable
    return out


def _opens(cfg: Config, name: str, dest, secret: bytes) -> bool:
    """True when secret opens the destination's repository (restic cat config via a 0600 temp file)."""
    with tempfile.TemporaryDirectory(prefix="backupd-recover-") as tmp:
        pw = Path(tmp) / "password"
        password.write_secret_file(pw, secret.decode() + "\n")
        repo = dataclasses.replace(repository(cfg, name, dest), password_file=pw)
        return restic_init.exists(repo)


def recover(cfg: Config, policy_set, private_key_file: Path, out_dir: Path | None = None) -> list[dict]:
    """Open each escrow with the offline private key and prove the password opens the repository."""
    private = _read_key_file(private_key_file, sealing.load_private)
    results = []
    for name, dest in policy_set.destinations.items():
        try:
            results.append(_recover_one(cfg, name, dest, private, out_dir))
        except DependencyError as exc:
            results.append({"destination": name, "status": "unavailable", "opens": False, "error": str(exc)})
        except (BackupdError, ClientError, ValueError) as exc:
            results.append({"destination": name, "status": "failed", "opens": False,
                            "error": f"{exc.__class__.__name__}: {exc}"[:300]})
    evidence.record(cfg, "keys_recover", {"destinations": results})
    return results


def _rotate_file(cfg: Config, pw_file: Path, members: list) -> dict:
    """Add a new key to every repository sharing pw_file, verify, swap the file, remove the old keys."""
    out = {"password_file": str(pw_file), "status": "failed", "destinations": [n for n, _ in members]}
    new_file = pw_file.with_name(pw_file.name + ".new")
    password.write_secret_file(new_file, password.generate() + "\n")
    try:
        old = []
        for name, dest in members:
            repo = repository(cfg, name, dest)
            old.append((repo, restic_key.current_id(repo)))
            restic_key.add(repo, new_file)
        fresh = [dataclasses.replace(repo, password_file=new_file) for repo, _ in old]
        if not all(restic_init.exists(r) for r in fresh):
            raise BackupdError("the new key does not open every repository; old password kept")
        os.replace(new_file, pw_file)
        for (repo, key_id), _ in zip(old, fresh):
            restic_key.remove(dataclasses.replace(repo, password_file=pw_file), key_id)
        out.update(status="ok", removed_key=",".join(k[:8] for _, k in old))
    except DependencyError as exc:
        out.update(status="unavailable", error=str(exc))
    except BackupdError as exc:
        out["error"] = str(exc)
    finally:
        new_file.unlink(missing_ok=True)
    return out


def rotate(cfg: Config, policy_set, public_key_file: Path | None = None) -> list[dict]:
    """Rotate every password file; re-escrow when a recovery public key is given."""
    groups: dict[Path, list] = defaultdict(list)
    for name, dest in policy_set.destinations.items():
        groups[dest.password_file].append((name, dest))
    results = [_rotate_file(cfg, pw, members) for pw, members in groups.items()]
    evidence.record(cfg, "keys_rotate", {"files": results})
    if public_key_file is not None and all(r["status"] == "ok" for r in results):
        escrow(cfg, policy_set, public_key_file)
    return results
