"""Webhook channel: the message as a JSON POST."""

from __future__ import annotations

import json
import urllib.request

TIMEOUT = 10.0


def send(url: str, message) -> None:
    """POST message.to_dict() as JSON; raises on a non-2xx answer or a network error."""
    body = json.dumps(message.to_dict(), sort_keys=True, default=str).encode("utf-8")
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "backupd"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 (URL is operator config)
        if not 200 <= resp.status < 300:
            raise OSError(f"webhook answered HTTP {resp.status}")
