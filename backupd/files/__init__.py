"""Files backed up and restored: the content manifest (manifest.py, with restic's exclude patterns in
excludes.py), verification of a restore against it (verify.py), walking an attacker-shaped tree (tree.py)
and defusing the modes a restore brought back (restored_modes.py)."""
