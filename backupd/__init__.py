"""backupd: keeps a port TOS recoverable with restic and Object-Lock storage, and proves it."""

__version__ = "0.1.0"
