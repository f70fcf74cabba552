"""Exceptions that carry the CLI exit code of the contract in docs/design.md.

0 success, 1 a finding (check/verification/drill failed), 2 usage or configuration error,
3 a dependency was unavailable (storage down, restic missing).
"""

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_CONFIG = 2
EXIT_DEPENDENCY = 3


class BackupdError(Exception):
    """Base error; `exit_code` is what the CLI returns. Messages never hold secrets."""

    exit_code = EXIT_FINDING


class ConfigError(BackupdError):
    """Bad configuration or usage: the user must change something."""

    exit_code = EXIT_CONFIG


class DependencyError(BackupdError):
    """A dependency (restic, storage, database) is unavailable; retrying later may help."""

    exit_code = EXIT_DEPENDENCY


class Finding(BackupdError):
    """A backup, check or verification failed."""

    exit_code = EXIT_FINDING
