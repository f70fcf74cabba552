"""Where the files shipped beside the package live: the example policy, drill specs, IAM and SeaweedFS templates.

A source checkout (or an editable install) has them at the repository root; a wheel installs them under
`<prefix>/share/backupd/` (pyproject `data-files`). `backupd init` and `backupd storage init` read them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from backupd.errors import ConfigError

_MARKER = Path("policies") / "terminal.yaml"


def root() -> Path:
    """The directory holding policies/, restore_tests/ and deploy/; ConfigError when none is found."""
    candidates = [Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / "backupd",
                  Path("/usr/local/share/backupd"), Path("/usr/share/backupd")]
    for base in candidates:
        if (base / _MARKER).is_file():
            return base
    raise ConfigError("the shipped templates (policies/terminal.yaml, restore_tests/, deploy/) were not found in "
                      + ", ".join(str(c) for c in candidates) + "; reinstall backupd")


def path(*parts: str) -> Path:
    """A shipped file or directory, e.g. path("deploy", "iam", "writer.json")."""
    return root().joinpath(*parts)
