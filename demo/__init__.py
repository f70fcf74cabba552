"""Local demo/test stack for backupd: SeaweedFS (Object Lock), PostgreSQL with a TOS database, TOS file trees.

Everything listens on 127.0.0.1 or a unix socket only; every process is stopped on exit.
"""
