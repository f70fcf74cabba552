"""Is a destination's storage reachable? The storage pre-flight (backupd.storage.probe: one bounded,
unsigned HTTP HEAD, which also catches an endpoint that accepts and never answers) with a short timeout,
before restic is started on it, so an outage costs a job seconds (not restic's minutes of retries) and never
holds up local destinations. Local directories are not probed: restic reports a missing one itself."""

from __future__ import annotations

import dataclasses

from backupd.storage import probe as storage_probe

PROBE_TIMEOUT = 3.0


def probe(dest, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when reachable (or not probed), else why not (no secrets: the endpoint only)."""
    if getattr(dest, "kind", None) != "s3" or not getattr(dest, "endpoint", None):
        return None
    why = storage_probe.head(dest.endpoint, getattr(dest, "region", "us-east-1"), getattr(dest, "bucket", ""),
                             timeout=timeout)
    return f"{dest.endpoint} unreachable ({why})" if why else None


def without(policy_set, skip: set[str]):
    """The policy set as a job sees it: destinations in `skip` left out of every target."""
    if not skip:
        return policy_set
    loaded = []
    for lp in policy_set.policies:
        if lp.policy is None:
            loaded.append(lp)
            continue
        targets = [t.model_copy(update={"destinations": [d for d in t.destinations if d not in skip]})
                   for t in lp.policy.targets]
        loaded.append(dataclasses.replace(lp, policy=lp.policy.model_copy(update={"targets": targets})))
    return dataclasses.replace(policy_set, policies=loaded)
