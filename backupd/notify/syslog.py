"""Syslog channel: one line per message at warning (firing) or notice (resolved)."""

from __future__ import annotations

import logging
import logging.handlers
import os


class _Handler(logging.handlers.SysLogHandler):
    def handleError(self, record) -> None:
        raise  # noqa: PLE0704 (re-raise the emit error: Alerts logs it as a failed channel)


class Sender:
    """`target` True: the local /dev/log; a path: that socket; "host:port": UDP syslog."""

    def __init__(self, target: str | bool):
        if target is True:
            address = "/dev/log" if os.path.exists("/dev/log") else ("127.0.0.1", 514)
        elif ":" in str(target) and not str(target).startswith("/"):
            host, _, port = str(target).rpartition(":")
            address = (host, int(port))
        else:
            address = str(target)
        self.address = address
        self._handler: logging.Handler | None = None

    def _logger(self) -> logging.Logger:
        logger = logging.getLogger("backupd.notify.syslog")
        if self._handler is None:
            self._handler = _Handler(
                address=self.address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            self._handler.setFormatter(logging.Formatter("backupd: %(message)s"))
            logger.addHandler(self._handler)
            logger.propagate = False
            logger.setLevel(logging.INFO)
        return logger

    def send(self, message) -> None:
        level = logging.INFO if message.state == "resolved" else logging.WARNING
        self._logger().log(level, "%s target=%s kind=%s state=%s", message.summary, message.target,
                           message.kind, message.state)
