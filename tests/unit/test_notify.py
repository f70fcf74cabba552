"""Alerts: dedup across restarts, the persistent outbox (retries, rate limit), and real delivery to a
webhook and an SMTP server on 127.0.0.1 (tiny servers written here), STARTTLS with a verified certificate."""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backupd.notify import Alerts, Message, smtp, webhook
from backupd.daemon.settings import NotifySettings, SmtpSettings
from backupd.errors import ConfigError


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


class ReusableTCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # a test stops a server and starts one on the same port
    daemon_threads = True


class SmtpReceiver:
    """A minimal SMTP server: enough of RFC 5321 (and STARTTLS when given a TLS context) for smtplib
    to deliver; keeps each DATA. `port` reuses a port, so a test can stop and start "the same" server."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None):
        self.messages: list[str] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line):
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

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
                    elif verb == "EHLO" and tls is not None:
                        self.reply("250-localhost")
                        self.reply("250 STARTTLS")
                    elif verb == "STARTTLS" and tls is not None:
                        self.reply("220 go ahead")
                        try:
                            self.request = tls.wrap_socket(self.request, server_side=True)
                        except (ssl.SSLError, OSError):
                            return  # the client refused our certificate
                        self.rfile, self.wfile = self.request.makefile("rb"), self.request.makefile("wb")
                    elif verb in ("EHLO", "HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                        self.reply("250 ok")
                    else:
                        self.reply("502 not implemented")

        self.server = ReusableTCPServer(("127.0.0.1", port), Handler)
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


def test_rate_limit_delays_and_summarises_never_drops(tmp_path, receivers):
    hook, _ = receivers
    events = []
    alerts = Alerts(tmp_path, NotifySettings(webhook=hook.url, rate_limit_per_hour=2),
                    lambda name, **kw: events.append(name))
    for i in range(4):
        alerts.update(f"rpo_breach:t{i}", True, msg(t=1000 + i, target=f"t{i}"))
    assert [b["target"] for b in hook.bodies] == ["t0", "t1"] and "alert_rate_limited" in events
    assert alerts.depth()[0] == 2
    assert alerts.deliver(1000 + 1800) == 1000 + 3600  # still limited: asleep until the first slot frees
    assert len(hook.bodies) == 2
    alerts.deliver(1000 + 3601)  # late, not never: the two held alerts as one summary
    assert len(hook.bodies) == 3 and hook.bodies[2]["kind"] == "summary"
    assert [m["target"] for m in hook.bodies[2]["detail"]["messages"]] == ["t2", "t3"]
    assert "t2: RPO" in hook.bodies[2]["summary"] and alerts.depth() == (0, None)


def test_one_rate_limited_alert_arrives_late_as_itself(tmp_path, receivers):
    hook, _ = receivers
    alerts = Alerts(tmp_path, NotifySettings(webhook=hook.url, rate_limit_per_hour=1), lambda *a, **kw: None)
    alerts.update("backup_failed:a", True, msg(t=1000, target="a"))
    alerts.update("backup_failed:b", True, msg(t=1010, target="b"))
    assert [b["target"] for b in hook.bodies] == ["a"]
    alerts = Alerts(tmp_path, NotifySettings(webhook=hook.url, rate_limit_per_hour=1), lambda *a, **kw: None)
    alerts.deliver(1000 + 3601)  # after a restart too: the outbox is on disk
    assert [b["target"] for b in hook.bodies] == ["a", "b"] and hook.bodies[1]["kind"] == "rpo_breach"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_smtp_down_for_three_ticks_then_up_delivers_exactly_once(tmp_path):
    port = _free_port()  # nothing listens: the SMTP server is down
    settings = NotifySettings(smtp=SmtpSettings("127.0.0.1", port, "b@h", ["ops@h"], timeout_seconds=2))
    events = []
    alerts = Alerts(tmp_path, settings, lambda name, **kw: events.append((name, kw)))
    t = 1000.0
    assert alerts.update("backup_failed:tos-db", True, msg(t=t))  # queued even though it cannot go out
    for tick in range(1, 4):  # three health ticks while the server is down: retried, kept
        alerts.update("backup_failed:tos-db", True, msg(t=t + tick))
        alerts.deliver(t + 3600 * tick)
    failed = [kw for name, kw in events if name == "alert_failed"]
    assert len(failed) == 4 and failed[-1]["attempts"] == 4 and alerts.depth()[0] == 1
    mail = SmtpReceiver(port)  # the server comes back
    try:
        for tick in range(4, 7):
            alerts.deliver(t + 3600 * tick)
        assert len(mail.messages) == 1 and "Subject: [backupd ALERT] tos-01: tos-db: RPO" in mail.messages[0]
        assert alerts.depth() == (0, None)
    finally:
        mail.close()


def test_a_resolution_never_overtakes_its_alert(tmp_path):
    sent, broken = [], [True]

    def channel(m):
        if broken[0]:
            raise OSError("down")
        sent.append(m.state)

    alerts = Alerts(tmp_path, NotifySettings(rate_limit_per_hour=10), lambda *a, **kw: None,
                    send_to={"test": channel})
    alerts.update("backup_failed:a", True, msg(t=1000))
    alerts.update("backup_failed:a", False, msg("resolved", t=1001))
    assert alerts.deliver(1002) == 1000 + 30  # the failed channel backs off; the resolution waits behind
    broken[0] = False
    alerts.deliver(1031)
    assert sent == ["firing", "resolved"]


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test smtp")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "ca.pem", tmp_path / "key.pem")
    return ctx, tmp_path / "ca.pem"


def test_starttls_verifies_the_server_certificate(tmp_path):
    ctx, ca = _self_signed(tmp_path)
    mail = SmtpReceiver(tls=ctx)
    try:
        untrusted = SmtpSettings("127.0.0.1", mail.port, "b@h", ["ops@h"], starttls=True, timeout_seconds=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            smtp.send(untrusted, msg())
        assert mail.messages == []
        trusted = SmtpSettings("127.0.0.1", mail.port, "b@h", ["ops@h"], starttls=True, timeout_seconds=5,
                               ca_file=ca)
        smtp.send(trusted, msg())
        assert len(mail.messages) == 1
    finally:
        mail.close()


def test_broken_channel_is_logged_not_raised(tmp_path):
    events = []
    alerts = Alerts(tmp_path, NotifySettings(webhook="http://127.0.0.1:9/none"),
                    lambda name, **kw: events.append((name, kw)))
    assert alerts.update("backup_failed:x", True, msg())
    failed = [kw for name, kw in events if name == "alert_failed"]
    assert failed and failed[0]["channel"] == "webhook" and alerts.depth()[0] == 1


def test_smtp_login_credentials_file(tmp_path):
    (tmp_path / "smtp.env").write_text("SMTP_USER=u\n")
    with pytest.raises(ConfigError, match="smtp.env: needs SMTP_PASSWORD"):
        smtp._credentials(tmp_path / "smtp.env")
    assert webhook.TIMEOUT > 0
