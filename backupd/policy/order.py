"""The order targets are restored in at an incident (and projected in by status and the runbook).

Kept apart from backupd.actions.incident so that status, which also runs in the daemon, does not load
incident's S3 client to sort targets."""

from __future__ import annotations

#: Restore order when a policy gives none: the data the terminal cannot work without comes first.
CATEGORY_ORDER = ("container_data", "system_program", "control_system", "logs", "documentation")


def restore_order(policy_set) -> list:
    """Targets in restore order: by category, production programs before development/evaluation."""
    def key(t):
        env_rank = 0 if t.environment in (None, "production") else 1
        return (env_rank, CATEGORY_ORDER.index(t.category))
    return sorted(policy_set.targets, key=key)
