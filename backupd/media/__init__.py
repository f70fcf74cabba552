"""Removable media of a rotation set: identifying an attached medium (identify.py) and where the restic
repository and backupd's metadata live on it (layout.py)."""
