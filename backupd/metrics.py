"""Prometheus text-format metrics: per target backup age, last status and duration.

`render(rows)` turns status rows (backupd.actions.status.run plus daemon columns) into exposition
text; `Server` serves the latest text over HTTP on a loopback address in a thread; `write_textfile`
writes it atomically for node_exporter's textfile collector.
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from backupd.errors import ConfigError

STATUS_VALUE = {"ok": 1, "stale": 0, "failed": 0, "never": 0}
METRICS = (
    ("backupd_backup_age_seconds", "gauge", "Seconds since the last successful backup of the target."),
    ("backupd_backup_rpo_seconds", "gauge", "The target's RPO (its backup frequency) in seconds."),
    ("backupd_backup_last_success", "gauge", "1 when the last backup run of the target succeeded."),
    ("backupd_backup_status", "gauge", "1 for the status the target is in (ok, stale, failed, never)."),
    ("backupd_backup_last_duration_seconds", "gauge", "Duration of the target's last backup run."),
    ("backupd_backup_last_success_timestamp_seconds", "gauge", "Unix time of the last successful backup."),
    ("backupd_backup_next_due_timestamp_seconds", "gauge", "Unix time the daemon runs the target next."),
)


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _samples(row: dict) -> dict[str, list[tuple[str, float]]]:
    t = f'target="{_label(row["target"])}"'
    out: dict[str, list[tuple[str, float]]] = {name: [] for name, _, _ in METRICS}
    if row.get("age_seconds") is not None:
        out["backupd_backup_age_seconds"].append((t, row["age_seconds"]))
    if row.get("rpo_seconds") is not None:
        out["backupd_backup_rpo_seconds"].append((t, row["rpo_seconds"]))
    out["backupd_backup_last_success"].append((t, 0 if row["status"] in ("failed", "never") else 1))
    for status in STATUS_VALUE:
        out["backupd_backup_status"].append((f'{t},status="{status}"', int(row["status"] == status)))
    for key, name in (("last_duration", "backupd_backup_last_duration_seconds"),
                      ("last_success_time", "backupd_backup_last_success_timestamp_seconds"),
                      ("next_due", "backupd_backup_next_due_timestamp_seconds")):
        if row.get(key) is not None:
            out[name].append((t, row[key]))
    return out


def render(rows: list[dict], extra: dict[str, float] | None = None) -> str:
    """Exposition text for the rows; `extra` adds unlabelled gauges (e.g. backupd_daemon_running_jobs)."""
    per_row = [_samples(r) for r in rows]
    lines = []
    for name, kind, help_text in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for samples in per_row:
            lines += [f"{name}{{{labels}}} {value:g}" for labels, value in samples[name]]
    for name, value in sorted((extra or {}).items()):
        lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Write atomically (temp file + rename) so the collector never reads half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Server:
    """GET /metrics on host:port in a daemon thread; `update(text)` swaps what it serves."""

    def __init__(self, host: str, port: int):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(f"metrics.listen: {host} is not a loopback address; "
                              "expose metrics through a proxy or the textfile collector")
        self.text = "# no data yet\n"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = server.text.encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not worth a log line each
                pass

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"metrics.listen: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                       daemon=True)

    def start(self) -> "Server":
        self.thread.start()
        return self

    def update(self, text: str) -> None:
        self.text = text

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
