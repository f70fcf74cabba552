"""systemd's sd_notify protocol without a dependency: datagrams to $NOTIFY_SOCKET.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """READY=1, WATCHDOG=1, STOPPING=1, RELOADING=1, STATUS=... to the service manager."""

    def __init__(self, environ=os.environ):
        addr = environ.get("NOTIFY_SOCKET", "")
        # "@name" is the abstract namespace: a leading NUL byte on the wire.
        self.address = ("\0" + addr[1:]) if addr.startswith("@") else addr
        usec = environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 1e6 / 2 if usec.isdigit() and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send KEY=VALUE lines in one datagram; False when there is no socket or it failed."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(fields).encode("utf-8"))
            return True
        except OSError:
            return False

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")
