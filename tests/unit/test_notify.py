"""Alerts: dedup across restarts, rate limit, and real delivery to a webhook and an SMTP server on
127.0.0.1 (both tiny servers written here)."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backupd.notify import Alerts, Message, smtp, webhook
from backupd.daemon.settings import NotifySettings, SmtpSettings


class WebhookReceiver:
    """Collects JSON bodies POSTed to it."""

    def __init__(self):
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SmtpReceiver:
    """A minimal SMTP server: enough of RFC 5321 for smtplib to deliver; keeps each DATA."""

    def __init__(self):
        self.messages: list[str] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line):
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                self.reply("220 localhost test SMTP")
                while line := self.rfile.readline():
                    verb = line.decode().strip().split(" ")[0].upper()
                    if verb == "DATA":
                        self.reply("354 go ahead")
                        data = []
                        while (ln := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(ln.decode())
                        outer.messages.append("".join(data))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    elif verb in ("EHLO", "HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                        self.reply("250 ok")
                    else:
                        self.reply("502 not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    hook, mail = WebhookReceiver(), SmtpReceiver()
    yield hook, mail
    hook.close()
    mail.close()


def msg(state="firing", t=1000.0, target="tos-db"):
    return Message("rpo_breach", state, target, "tos-01", f"{target}: RPO", {"age_seconds": 7200}, t)


def test_one_alert_and_one_resolution_per_condition_across_restarts(tmp_path, receivers):
    hook, mail = receivers
    settings = NotifySettings(webhook=hook.url, smtp=SmtpSettings("127.0.0.1", mail.port, "b@h", ["ops@h"]))
    events = []
    log = lambda name, **kw: events.append(name)  # noqa: E731
    alerts = Alerts(tmp_path, settings, log)
    sent = [alerts.update("rpo_breach:tos-db", True, msg(t=1000 + i)) for i in range(3)]
    alerts = Alerts(tmp_path, settings, log)  # a restart keeps the open condition
    sent += [alerts.update("rpo_breach:tos-db", True, msg(t=1010))]
    sent += [alerts.update("rpo_breach:tos-db", False, msg("resolved", 1020 + i)) for i in range(3)]
    assert sent == [True, False, False, False, True, False, False]
    assert [b["state"] for b in hook.bodies] == ["firing", "resolved"]
    assert hook.bodies[0]["target"] == "tos-db" and hook.bodies[0]["subject"].startswith("[backupd ALERT]")
    assert len(mail.messages) == 2
    assert "Subject: [backupd ALERT] tos-01: tos-db: RPO" in mail.messages[0]
    assert "[backupd RESOLVED]" in mail.messages[1]


def test_rate_limit_caps_messages_per_hour(tmp_path, receivers):
    hook, _ = receivers
    events = []
    alerts = Alerts(tmp_path, NotifySettings(webhook=hook.url, rate_limit_per_hour=2),
                    lambda name, **kw: events.append(name))
    for i in range(4):
        alerts.update(f"rpo_breach:t{i}", True, msg(t=1000 + i, target=f"t{i}"))
    assert len(hook.bodies) == 2 and events.count("alert_rate_limited") == 2
    alerts.update("rpo_breach:t9", True, msg(t=1000 + 3601, target="t9"))
    assert len(hook.bodies) == 3


def test_broken_channel_is_logged_not_raised(tmp_path):
    events = []
    alerts = Alerts(tmp_path, NotifySettings(webhook="http://127.0.0.1:9/none"),
                    lambda name, **kw: events.append((name, kw)))
    assert alerts.update("backup_failed:x", True, msg())
    assert events[0][0] == "alert_failed" and events[0][1]["channel"] == "webhook"


def test_smtp_login_credentials_file(tmp_path):
    (tmp_path / "smtp.env").write_text("SMTP_USER=u\n")
    with pytest.raises(ValueError, match="SMTP_PASSWORD"):
        smtp._credentials(tmp_path / "smtp.env")
    assert webhook.TIMEOUT > 0
