"""Change judgement at backup time: each new generation is compared with the target's last clean one
(baseline.py) for ransomware-like change (analytics.py) and for edited append-only logs (appendonly.py)."""
