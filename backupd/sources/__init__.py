"""Data sources that produce a stream for `restic backup --stdin` (database dumps, commands)."""
