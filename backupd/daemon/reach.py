"""Is a destination's storage reachable? A bounded TCP connect to an S3 endpoint before restic is
started on it, so an outage costs a job seconds (not restic's minutes of retries) and never holds up
local destinations. Local directories are not probed: restic reports a missing one itself."""

from __future__ import annotations

import dataclasses
import socket
from urllib.parse import urlsplit

PROBE_TIMEOUT = 3.0


def probe(dest, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when reachable (or not probed), else why not (no secrets: host and port only)."""
    if getattr(dest, "kind", None) != "s3" or not getattr(dest, "endpoint", None):
        return None
    url = urlsplit(dest.endpoint)
    host = url.hostname or ""
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((host, port), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        return f"{host}:{url.port or ''} unreachable ({reason})"
    return None


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
