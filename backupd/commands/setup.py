"""Installation commands: `backupd init` (a new site's files and keys) and `backupd storage init` (the bucket)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import click

from backupd import output
from backupd.commands.common import common, load_config
from backupd.errors import EXIT_CONFIG, EXIT_DEPENDENCY, EXIT_FINDING, EXIT_OK, ConfigError

_PATH = click.Path(path_type=Path)


def _ask(value, flag: str, prompt: str, yes: bool, default=None, **kw):
    """The flag's value; else a prompt (with --yes: the default, or a usage error when there is none)."""
    if value is not None:
        return value
    if yes:
        if default is None:
            raise ConfigError(f"{flag} is required with --yes")
        return default
    return click.prompt(prompt, default=default, err=True, **kw)


def _init_report(files: dict, result: dict, as_json: bool) -> int:
    failed = [e for e in result["escrow"] if e["status"] != "ok"]
    code = EXIT_FINDING if result["lint"] or failed else EXIT_OK
    if any(e["status"] == "unavailable" for e in failed):
        code = EXIT_DEPENDENCY
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "files": files, **result})
        return code
    for role, path in files.items():
        print(f"wrote {role}: {path}")
    for k in result["keys"]:
        print(f"password {'created' if k['created'] else 'kept'}: {k['password_file']}")
    for e in result["escrow"]:
        print(f"escrow {e['destination']}: {e['status']} {e.get('file', '')} {e.get('error', '')}".rstrip())
    for finding in result["lint"]:
        print(f"lint: {finding}")
    print("next steps:")
    for i, step in enumerate(result["next"], 1):
        print(f"  {i}. {step}")
    return code


def _storage_report(result: dict, as_json: bool) -> int:
    statuses = {r["status"] for r in result["destinations"]}
    code = EXIT_FINDING if statuses & {"finding", "failed"} else EXIT_OK
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, **result})
        return code
    for r in result["destinations"]:
        print(f"{r['destination']}: bucket {r['bucket']} {r['status']} (retention >= {r['retention']})")
        for step in r["steps"]:
            print(f"  set: {step}")
        for c in r["checks"]:
            print(f"  {'ok' if c['ok'] else c['severity'].upper()}: {c['name']}: {c['detail']}")
        for key in ("note", "error"):
            if r.get(key):
                print(f"  {r[key]}")
        policies = r["identity_policies"]
        for name, doc in policies["aws_iam"].items():
            print(f"\n# AWS IAM policy of the {name} identity (bucket {r['bucket']})\n{json.dumps(doc, indent=2)}")
        print(f"\n# SeaweedFS -s3.config identities (replace the @..._KEY@ placeholders)\n"
              f"{json.dumps(policies['seaweedfs'], indent=2)}")
        if r.get("unfilled"):
            print(f"\n# still to fill in: {', '.join(r['unfilled'])} (--host, --verifier-host)")
        print("\n# each identity's keys (AWS_ACCESS_KEY_ID=/AWS_SECRET_ACCESS_KEY=, mode 0600) go into the file "
              "the policy field names; the units load it under that name")
        for name, where in r.get("credential_files", {}).items():
            print(f"#   {name}: {where['file']} ({where['field']}; {', '.join(where['units'])})")
    return code


def register(main: click.Group) -> None:
    """Add `init` and the `storage` group to main."""

    @main.command("init")
    @click.option("--site", default=None, help="The terminal's name (policy site.name).")
    @click.option("--port", "port_name", default=None,
                  help="keihin | nagoya | osaka | kobe | hakata | other (policy site.port).")
    @click.option("--host", default=None, help="This TOS host's name (default: hostname).")
    @click.option("--endpoint", default=None, help="S3 endpoint URL, e.g. https://s3.ap-northeast-1.amazonaws.com.")
    @click.option("--bucket", default=None, help="The Object-Lock bucket (see `backupd storage init`).")
    @click.option("--region", default=None, help="S3 region (default us-east-1).")
    @click.option("--state-dir", default=None, type=_PATH, help="Default /var/lib/backupd.")
    @click.option("--secrets-dir", default=None, type=_PATH, help="Default <config-dir>/secrets.")
    @click.option("--config-dir", default=None, type=_PATH, help="Default /etc/backupd.")
    @click.option("--recovery-public-key", default=None, type=_PATH,
                  help="X25519 public key (PEM) of the offline recovery key: escrow the password to it.")
    @click.option("--writer-credentials", default=None, type=_PATH,
                  help="Credentials file of the writer identity, copied to <secrets-dir>/s3-writer.env (0600).")
    @click.option("--canary-credentials", default=None, type=_PATH,
                  help="Credentials file of the canary identity, copied to <secrets-dir>/s3-canary.env (0600).")
    @click.option("--auditor-credentials", default=None, type=_PATH,
                  help="Credentials file of the read-only auditor identity (the storage audit reads bucket settings "
                       "with it), copied to <secrets-dir>/s3-auditor.env (0600).")
    @click.option("--yes", is_flag=True, help="Ask nothing: defaults for what is not given.")
    @common
    def init(site, port_name, host, endpoint, bucket, region, state_dir, secrets_dir, config_dir,
             recovery_public_key, writer_credentials, canary_credentials, auditor_credentials, yes, config_path,
             as_json):
        """Set up a new site: backupd.yaml, a policy from the shipped example, drill specs, the repository
        password (0600), escrow, lint, and the next steps. Never overwrites an existing file."""
        from backupd.actions import site_init as action

        if config_path is not None:
            raise ConfigError("init writes <config-dir>/backupd.yaml: use --config-dir, not --config")
        given = dict(site=site, port=port_name, host=host, endpoint=endpoint, bucket=bucket, region=region,
                     state_dir=state_dir, secrets_dir=secrets_dir, config_dir=config_dir,
                     writer_credentials=writer_credentials, canary_credentials=canary_credentials,
                     auditor_credentials=auditor_credentials, recovery_public_key=recovery_public_key)
        return _init(action, given, yes, as_json)

    @main.group()
    def storage() -> None:
        """The backup storage: one-time bucket creation."""

    @storage.command("init")
    @click.option("--admin-credentials", required=True, type=_PATH,
                  help="Credentials file (AWS_ACCESS_KEY_ID=/AWS_SECRET_ACCESS_KEY=) of an administrator identity.")
    @click.option("--destination", default=None, help="Only this policy destination.")
    @click.option("--bucket", default=None, help="Without a config: the bucket to create.")
    @click.option("--endpoint", default=None, help="Without a config: S3 endpoint URL (default AWS).")
    @click.option("--region", default="us-east-1", show_default=True, help="Without a config: S3 region.")
    @click.option("--path", "prefix", default="restic", show_default=True,
                  help="Without a config: the repository prefix (for the identity policies).")
    @click.option("--retention", default="12w", show_default=True,
                  help="Without a config: default retention, >= the longest min_history of the site's targets.")
    @click.option("--host", default=None,
                  help="The backup host whose writer the policies confine (default: the config's host).")
    @click.option("--verifier-host", default=None,
                  help="The verifier's host (its config's host:) for the verifier policy.")
    @common
    def storage_init(admin_credentials, destination, bucket, endpoint, region, prefix, retention, host,
                     verifier_host, config_path, as_json):
        """Create the Object-Lock bucket(s): versioning, COMPLIANCE retention >= min_history, a reclaim rule
        that never expires a version before it; print the identity policies. Never weakens an existing bucket."""
        from backupd.actions import storage_init as action
        from backupd.policy.durations import parse_duration

        for name in (host, verifier_host):
            if name is not None:
                _check_host(name)
        if bucket:
            if destination:
                raise ConfigError("--bucket and --destination exclude each other")
            targets = [action.Bucket(bucket, endpoint, bucket, region, prefix, _duration(parse_duration, retention),
                                     host)]
        else:
            targets = action.from_config(load_config(config_path), destination, host)
        return _storage_report(action.run(targets, admin_credentials, verifier_host), as_json)


def _check_host(name: str) -> None:
    """--host/--verifier-host must be a host name (it becomes an S3 key prefix in the policies)."""
    from backupd.policy.schema import check_name

    try:
        check_name(name, "host")
    except ValueError as exc:
        raise ConfigError(f"--host/--verifier-host: {exc}") from None


def _duration(parse, text: str):
    """--retention as a timedelta; at least 3w, the shortest min_history lint accepts (dormant malware)."""
    try:
        span = parse(text)
    except ValueError as exc:
        raise ConfigError(f"--retention: {exc}") from None
    if span < timedelta(weeks=3):
        raise ConfigError(f"--retention {text} is shorter than 3w: malware can lie dormant for weeks")
    return span


def _answers(action, given: dict, yes: bool):
    """The site's answers: flags first, then prompts (defaults shown), never a prompt with --yes."""
    def ask(key, prompt, default=None, **kw):
        return _ask(given[key], "--" + key.replace("_", "-"), prompt, yes, default, **kw)

    config_dir = Path(ask("config_dir", "Configuration directory", Path("/etc/backupd"), type=_PATH))
    answers = action.Answers(
        site=ask("site", "Site (terminal name)"),
        port=ask("port", "Port (keihin, nagoya, osaka, kobe, hakata, other)", "other"),
        host=ask("host", "Host (this TOS host's name)", socket.gethostname()),
        endpoint=ask("endpoint", "Endpoint (S3 URL)"),
        bucket=ask("bucket", "Bucket (with Object Lock)"),
        region=ask("region", "Region", "us-east-1"),
        state_dir=Path(ask("state_dir", "State directory", Path("/var/lib/backupd"), type=_PATH)).absolute(),
        secrets_dir=Path(ask("secrets_dir", "Secrets directory", config_dir / "secrets", type=_PATH)).absolute(),
        config_dir=config_dir.absolute(), writer_credentials=given["writer_credentials"],
        canary_credentials=given["canary_credentials"], auditor_credentials=given["auditor_credentials"])
    answers.check()
    return answers


def _init(action, given: dict, yes: bool, as_json: bool) -> int:
    """Ask what is missing, write the files, then keys, lint and escrow on the new config."""
    answers = _answers(action, given, yes)
    if not yes and not click.confirm(f"Write the configuration into {answers.config_dir}?", default=True, err=True):
        return EXIT_CONFIG
    files = action.write_files(answers)
    cfg = load_config(Path(files["config"]))
    return _init_report(files, action.bootstrap(cfg, given["recovery_public_key"]), as_json)
