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
