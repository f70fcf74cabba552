"""A restic repository as the engine sees it: where it is and how to open it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backupd.process.execute import Environment

#: variables scrubbed from every output restic produces
SECRET_KEYS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass
class Repository:
    """Location plus credentials of one restic repository.

    `url` is safe to log (no credentials). `password_file` is a path handed to restic through
    RESTIC_PASSWORD_FILE; `s3_keys` holds the AWS_* variables, which only travel in the
    child's environment. `read_only` (the verifier role) runs only reading subcommands, with `--no-lock`
    because its keys cannot write the lock files.
    """

    name: str
    url: str
    password_file: Path
    s3_keys: dict[str, str] = field(default_factory=dict, repr=False)
    cache_dir: Path | None = None
    restic_binary: str = "restic"
    #: seconds a storage request may make no progress before restic retries it (restic >= 0.17.1)
    stuck_request_timeout: float | None = None
    read_only: bool = False

    def environment(self) -> Environment:
        """Child environment for restic on this repository."""
        plain = {"RESTIC_REPOSITORY": self.url, "RESTIC_PASSWORD_FILE": str(self.password_file)}
        if self.cache_dir is not None:
            plain["RESTIC_CACHE_DIR"] = str(self.cache_dir)
        secret = {k: v for k, v in self.s3_keys.items() if k in SECRET_KEYS}
        plain.update({k: v for k, v in self.s3_keys.items() if k not in secret})
        return Environment(plain=plain, secret=secret)
