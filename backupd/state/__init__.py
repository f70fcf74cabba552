"""What lives in state_dir: the run history (runs.py, SQLite), the daemon's persisted schedule (jobs.py)
and the rule that the directory is private (statedir.py)."""
