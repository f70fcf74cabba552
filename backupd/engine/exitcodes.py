"""Classify restic's exit codes (and, before 0.17, its messages) into backupd errors."""

from __future__ import annotations

from backupd.engine import feature
from backupd.errors import ConfigError, DependencyError, Finding
from backupd.process.execute import Completed


class ResticError(Finding):
    """restic failed; `.kind` names how."""

    kind = "failed"


class SourceUnreadable(ResticError):
    """Exit 3: restic made a snapshot but could not read some source files."""

    kind = "source_unreadable"

    def __init__(self, message: str, items: list[str]):
        super().__init__(message)
        self.items = items


class RepositoryMissing(ResticError):
    kind = "no_repository"


class RepositoryLocked(ResticError):
    kind = "locked"


class WrongPassword(ConfigError):
    """The repository password (password_file) opens no key: configuration, exit 2."""

    kind = "wrong_password"


class StorageAccessDenied(ConfigError):
    """The S3 server refused the keys (unknown key id, bad signature, access denied): configuration, exit 2."""

    kind = "storage_access_denied"


class Cancelled(ResticError):
    kind = "cancelled"


class StorageUnavailable(DependencyError):
    kind = "storage_unavailable"


class TimedOut(DependencyError):
    """restic outlived its deadline (a stalled storage, or the job deadline) and was stopped.
    Not retried: the deadline is spent."""

    kind = "timed_out"


class Busy(DependencyError):
    """The repository is locked by a live process; we waited (bounded) and it did not finish."""

    kind = "busy"


_NO_REPO = ("Is there a repository at the following location?", "repository does not exist",
            "unable to open config file", "config file does not exist")
_LOCKED = ("repository is already locked", "unable to create lock")
_PASSWORD = ("wrong password or no key found",)
#: S3 error codes and messages for rejected keys; checked before _NO_REPO, whose "Is there a repository"
#: hint restic also prints when the config object could not be read because access was denied.
_ACCESS_DENIED = ("SignatureDoesNotMatch", "signature we calculated does not match", "InvalidAccessKeyId",
                  "access key id you provided does not exist", "Access Denied", "AccessDenied", "403 Forbidden")
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "dial tcp",
                "connection reset", "server misbehaving", "Client.Timeout")


def _first_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.lower().startswith(("fatal", "error")):
            return ln[:300]
    return (lines[-1] if lines else "no message")[:300]


def classify(done: Completed, what: str, version: tuple[int, int, int] | None = None) -> None:
    """Raise the matching error for a finished restic run; return for exit 0.

    Unknown exit codes are failures. `what` names the operation in messages. restic before 0.17
    has no exit codes 10-12 (it exits 1 and says why), so for those versions only the message counts.
    """
    code, err = done.returncode, done.stderr
    if version is not None and not feature.has("exit_codes_10_11_12", version) and code in (10, 11, 12):
        code = 1
    if code == 0 and not done.timed_out and not done.cancelled:
        return
    detail = _first_error_line(err)
    if done.timed_out:
        within = f" within {done.limit:.0f} s" if done.limit else ""
        raise TimedOut(f"{what}: restic did not finish{within} (timed out) and was stopped")
    if done.cancelled or code == 130:
        raise Cancelled(f"{what}: cancelled")
    if any(s.lower() in err.lower() for s in _UNREACHABLE):
        raise StorageUnavailable(f"{what}: storage unreachable ({detail})")
    if any(s.lower() in err.lower() for s in _ACCESS_DENIED):
        raise StorageAccessDenied(f"{what}: the S3 storage refused the credentials (wrong access key or secret "
                                  f"in credentials_file, or an identity without the needed grants): {detail}")
    if code == 10 or any(s in err for s in _NO_REPO):
        raise RepositoryMissing(f"{what}: no repository at this location ({detail})")
    if code == 12 or any(s in err for s in _PASSWORD):
        raise WrongPassword(f"{what}: wrong repository password or no key found; check password_file")
    if code == 11 or any(s in err for s in _LOCKED):
        raise RepositoryLocked(f"{what}: repository is locked by another process ({detail})")
    if code == 3:
        raise SourceUnreadable(f"{what}: some source files could not be read", [])
    raise ResticError(f"{what}: restic exited with {code}: {detail}")


