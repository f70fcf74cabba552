"""E-mail channel (SMTP, optional STARTTLS and login from a credentials file in secrets_dir).

STARTTLS verifies the server's certificate and host name against the system's CAs, or against
`notify.smtp.ca_file` when set; a server that fails verification gets nothing (the message stays in
the outbox and is retried)."""

from __future__ import annotations

import json
import smtplib
import ssl
from email.message import EmailMessage

from backupd.config import envfile

LOGIN_KEYS = ("SMTP_USER", "SMTP_PASSWORD")


def _credentials(path) -> tuple[str, str] | None:
    """SMTP_USER= / SMTP_PASSWORD= lines; None when no file is configured."""
    if path is None:
        return None
    keys = envfile.read(path, allowed=LOGIN_KEYS, required=LOGIN_KEYS)
    return keys["SMTP_USER"], keys["SMTP_PASSWORD"]


def render(settings, message) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.sender
    mail["To"] = ", ".join(settings.to)
    mail["Subject"] = message.subject
    mail.set_content(f"{message.summary}\n\n"
                     + json.dumps(message.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return mail


def send(settings, message) -> None:
    """Deliver one message; smtplib errors propagate to the caller, which logs them."""
    login = _credentials(settings.credentials_file)
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds) as conn:
        if settings.starttls:
            ca = getattr(settings, "ca_file", None)
            conn.starttls(context=ssl.create_default_context(cafile=str(ca) if ca else None))
        if login:
            conn.login(*login)
        conn.send_message(render(settings, message))
