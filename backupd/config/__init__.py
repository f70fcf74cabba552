"""Configuration: the daemon's own file (backupd.yaml: loader.py reads it, schema.py validates it), the
credentials files of secrets_dir (credentials.py, through the one KEY=VALUE parser envfile.py), and where
the shipped templates live (templates.py)."""
