"""The units' Documentation= names documents install.sh installs, and no project file cites build notes."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_documentation_url_is_a_doc_that_install_sh_installs():
    install = (ROOT / "deploy/systemd/install.sh").read_text()
    assert 'install -m 0644 "$docs"/*.md /usr/share/doc/backupd/' in install
    urls = [u for unit in (ROOT / "deploy/systemd").glob("*.service")
            for line in unit.read_text().splitlines() if line.startswith("Documentation=")
            for u in line.split("=", 1)[1].split()]
    assert urls
    for url in urls:
        name = re.fullmatch(r"file:///usr/share/doc/backupd/([\w.-]+\.md)", url)
        assert name, url
        assert (ROOT / "docs" / name.group(1)).is_file(), url


def test_no_project_file_cites_the_build_notes():
    hits = subprocess.run(["grep", "-rIn", "--exclude-dir=__pycache__", r"DESIGN\.md\|GUIDELINE\.md",
                           "backupd", "docs", "deploy", "README.md"],
                          cwd=ROOT, capture_output=True, text=True).stdout
    assert hits == ""


# --- one credentials model per role: units, shipped policy, configs, guide, init and storage init agree ----

UNITS = ROOT / "deploy/systemd"
GUIDE = ROOT / "docs/operator-guide.md"


def _policy_names() -> dict[str, str]:
    """Policy field -> the file name the shipped policy (what `backupd init` copies) gives it."""
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load((ROOT / "policies/terminal.yaml").read_text())
    dest = doc["destinations"]["worm-primary"]
    return {k: v for k, v in dest.items() if k.endswith(("credentials_file", "password_file"))}


def _guide_verifier_config() -> dict:
    from ruamel.yaml import YAML

    block = GUIDE.read_text().split("`/etc/backupd/verifier.yaml`:\n```yaml\n", 1)[1].split("```", 1)[0]
    return YAML(typ="safe").load(block)


def _role_names(role: str) -> set[str]:
    """The credential names a role's config and policies use."""
    from backupd.config.credentials import USES

    names = {v for k, v in _policy_names().items() if k in USES[role]}
    if role == "verifier":
        names.add(_guide_verifier_config()["evidence"]["credentials_file"])
    return names


def test_each_unit_loads_exactly_what_its_role_reads_under_the_policy_names():
    from backupd.config.credentials import UNITS as ROLE_UNITS
    from backupd.config.credentials import unit_credentials

    for role, unit in ROLE_UNITS.items():
        loaded = unit_credentials(UNITS / unit)
        assert set(loaded) == _role_names(role), (unit, sorted(loaded), sorted(_role_names(role)))
        for name, source in loaded.items():  # never one identity's keys under another's name
            assert source.name == name, f"{unit}: LoadCredential={name}:{source} hands a file over under another name"


def test_the_maintenance_config_says_its_role_and_the_units_read_their_own_configs():
    install = (UNITS / "install.sh").read_text()
    assert "write_config /etc/backupd/maintenance.yaml /var/lib/backupd-maintenance backupd-maintenance.service " \
           "maintenance" in install
    assert "role: verifier" in install and "secrets_dir: /run/credentials/backupd-verifier.service" in install
    maintenance = (UNITS / "backupd-maintenance.service").read_text()
    assert maintenance.count("--config /etc/backupd/maintenance.yaml") == 3
    assert "BACKUPD_CONFIG=/etc/backupd/verifier.yaml" in (UNITS / "backupd-verifier.service").read_text()
    assert _guide_verifier_config()["role"] == "verifier"


def test_the_operator_guide_table_is_the_units_and_the_policy_fields():
    from backupd.config.credentials import UNITS as ROLE_UNITS
    from backupd.config.credentials import unit_credentials

    table = GUIDE.read_text().split("| file | policy field | backupd.service |", 1)[1].split("\n\n", 1)[0]
    head = ["backupd.service", "backupd-maintenance.service", "backupd-verifier.service"]
    policy = _policy_names()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert rows
    for file, field, *marks in rows:
        name, key = file.strip("`"), field.split()[0].strip("`")
        assert policy.get(key, _guide_verifier_config()["evidence"]["credentials_file"]) == name, (name, key)
        for unit, mark in zip(head, marks):
            assert (mark == "yes") == (name in unit_credentials(UNITS / unit)), (name, unit)
    assert sorted(r[0].strip("`") for r in rows) == sorted({n for u in ROLE_UNITS.values()
                                                           for n in unit_credentials(UNITS / u)})


def test_every_credential_file_name_in_guide_units_install_and_init_is_the_models():
    from backupd.actions import storage_init
    from backupd.config.credentials import FILE_NAMES, UNITS as ROLE_UNITS

    known = set(FILE_NAMES.values())
    for path in [GUIDE, UNITS / "install.sh", *UNITS.glob("*.service"), ROOT / "backupd/actions/site_init.py",
                 ROOT / "backupd/commands/setup.py"]:
        found = set(re.findall(r"\bs3-[a-z]+\.env\b", path.read_text()))
        assert found <= known, (path, sorted(found - known))
    for identity, where in storage_init.credential_files().items():
        assert where["file"] == FILE_NAMES[where["field"]]
        for unit in where["units"]:
            assert where["file"] in (UNITS / unit).read_text(), (identity, unit)
    assert set(ROLE_UNITS.values()) == {p.name for p in UNITS.glob("*.service")}
