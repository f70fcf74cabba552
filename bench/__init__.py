"""Benchmarks of backupd against raw restic on the same data, printing ratios (see bench/README.md)."""
