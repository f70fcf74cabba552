"""restic engine wrapper: one module per restic subcommand; each builds argv and parses output.

Only `backupd.process.execute` spawns processes; these modules never touch the policy format.
"""
