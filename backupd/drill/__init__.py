"""Restore drills: spec schema (spec.py), private sandbox (sandbox.py), phase timing (phases.py),
stratified sampling (sample.py) and the RTO verdict (verdict.py). The action is actions/drill.py."""
