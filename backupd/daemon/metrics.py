"""The daemon's Prometheus metrics, through prometheus_client.

`Metrics.update(rows, daemon)` stores the latest status rows (backupd.actions.status.run plus daemon
columns) and daemon facts; every scrape renders them with exact values, HELP and TYPE, ages computed at
scrape time, plus the process, platform and GC collectors. `Server` serves GET /metrics on a loopback
address from a thread that sleeps in select() between scrapes; `write_textfile` writes the same text
atomically for node_exporter's textfile collector.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest, write_to_textfile
from prometheus_client.core import GaugeMetricFamily

from backupd.errors import ConfigError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BACKUP_STATUSES = ("ok", "stale", "failed", "never")
DRILL_VERDICTS = ("pass", "warn", "fail", "unavailable", "never")
AUDIT_RESULTS = ("ok", "finding", "never", "none")

#: name -> help text; every per-target metric has the label `target`.
HELP = {
    "backupd_backup_age_seconds": "Seconds since the last successful backup of the target.",
    "backupd_backup_rpo_seconds": "The target's RPO (its backup frequency) in seconds.",
    "backupd_backup_last_success": "1 when the target's last backup run succeeded.",
    "backupd_backup_status": "1 for the status the target is in (ok, stale, failed, never).",
    "backupd_backup_last_duration_seconds": "Duration of the target's last backup run.",
    "backupd_backup_last_success_timestamp_seconds": "Unix time of the last successful backup.",
    "backupd_backup_next_due_timestamp_seconds": "Unix time the daemon runs the target's backup next.",
    "backupd_backup_suspect_generations": "Successful backups of the target flagged suspect (ransomware-like change).",
    "backupd_drill_verdict": "1 for the verdict of the target's last restore drill (never: no drill yet).",
    "backupd_drill_ready_seconds": "Time to service-ready measured by the target's last restore drill.",
    "backupd_drill_last_timestamp_seconds": "Unix time the target's last restore drill finished.",
    "backupd_target_rto_seconds": "The target's RTO (allowable downtime) in seconds.",
    "backupd_verified_rpo_seconds": "Age of the newest snapshot of the target that passed a restore drill.",
    "backupd_storage_audit_status": "1 for the result of the last storage audit of the target's locked "
                                    "destinations (ok, finding, never; none: no Object Lock destination).",
    "backupd_check_coverage_ratio": "Share of the destination's packs read by check slices within the window.",
    "backupd_storage_reachable": "1 when the destination answered the daemon's last probe or backup.",
    "backupd_alert_outbox_messages": "Alert messages waiting in the outbox for a channel.",
    "backupd_alert_outbox_oldest_age_seconds": "Age of the oldest alert message waiting in the outbox.",
    "backupd_daemon_running_jobs": "Jobs (backups, drills, checks, audits) running now.",
    "backupd_daemon_start_timestamp_seconds": "Unix time the daemon started.",
    "backupd_daemon_ready_seconds": "Seconds from the daemon's start to READY (systemd notify).",
    "backupd_evidence_unmirrored_records": "Evidence records of the host not yet in the WORM mirror.",
    "backupd_evidence_unmirrored_oldest_age_seconds": "Age of the host's oldest evidence record not yet mirrored "
                                                      "(0 when all are).",
    "backupd_evidence_checkpoint_age_seconds": "Age of the host's newest signed checkpoint in the mirror.",
    "backupd_evidence_checkpoint_period_seconds": "evidence.checkpoint_period: how often a checkpoint is due.",
    "backupd_evidence_mirror_stale": "1 when records stayed unmirrored, or the newest checkpoint aged, beyond "
                                     "twice the checkpoint period (the daemon alerts).",
}


def _unix(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


class Metrics:
    """A collector over the latest status rows; register it in a registry (see `registry()`)."""

    def __init__(self) -> None:
        self._rows: list[dict] = []
        self._daemon: dict = {}
        self._lock = threading.Lock()

    def update(self, rows: list[dict], daemon: dict | None = None) -> None:
        """rows: status rows (+ next_due, suspect_generations); daemon: running_jobs, start_time,
        ready_seconds, outbox (count, oldest created), reachable {destination: bool}, evidence_mirror (the
        lag of backupd.evidence.lag); a callable
        value is called at each scrape."""
        with self._lock:
            self._rows, self._daemon = list(rows), dict(daemon or {})

    def describe(self):
        return []  # metrics appear once there is data; avoids a collect() at registration

    def collect(self):
        with self._lock:
            rows = self._rows
            daemon = {k: (v() if callable(v) else v) for k, v in self._daemon.items()}  # live values
        now = time.time()
        fam = {name: GaugeMetricFamily(name, text, labels=self._labels(name)) for name, text in HELP.items()}
        for row in rows:
            self._target(fam, row, now)
        for dest, up in sorted((daemon.get("reachable") or {}).items()):
            fam["backupd_storage_reachable"].add_metric([dest], 1.0 if up else 0.0)
        count, oldest = daemon.get("outbox") or (0, None)
        fam["backupd_alert_outbox_messages"].add_metric([], count)
        fam["backupd_alert_outbox_oldest_age_seconds"].add_metric([], max(0.0, now - oldest) if oldest else 0.0)
        self._mirror(fam, daemon.get("evidence_mirror"), now)
        for key, name in (("running_jobs", "backupd_daemon_running_jobs"),
                          ("start_time", "backupd_daemon_start_timestamp_seconds"),
                          ("ready_seconds", "backupd_daemon_ready_seconds")):
            if daemon.get(key) is not None:
                fam[name].add_metric([], daemon[key])
        return [f for f in fam.values() if f.samples]

    @staticmethod
    def _labels(name: str) -> list[str]:
        if name == "backupd_storage_reachable":
            return ["destination"]
        if name.startswith(("backupd_alert_", "backupd_daemon_")):
            return []
        if name.startswith("backupd_evidence_"):
            return ["host"]
        extra = {"backupd_backup_status": ["status"], "backupd_drill_verdict": ["verdict"],
                 "backupd_storage_audit_status": ["status"], "backupd_check_coverage_ratio": ["destination"]}
        return ["target", *extra.get(name, [])]

    @staticmethod
    def _mirror(fam: dict, lag: dict | None, now: float) -> None:
        """The evidence mirror lag (backupd.evidence.lag), ages at scrape time; nothing without a mirror."""
        if not lag:
            return
        host = [lag["host"]]
        oldest, cp = _unix(lag.get("unmirrored_oldest_time")), _unix(lag.get("checkpoint_time"))
        fam["backupd_evidence_unmirrored_records"].add_metric(host, lag["unmirrored_records"])
        fam["backupd_evidence_unmirrored_oldest_age_seconds"].add_metric(host, max(0.0, now - oldest) if oldest else 0.0)
        if cp is not None:
            fam["backupd_evidence_checkpoint_age_seconds"].add_metric(host, max(0.0, now - cp))
        fam["backupd_evidence_checkpoint_period_seconds"].add_metric(host, lag["checkpoint_period_seconds"])
        fam["backupd_evidence_mirror_stale"].add_metric(host, float(lag["unmirrored_stale"] or lag["checkpoint_stale"]))

    @staticmethod
    def _target(fam: dict, row: dict, now: float) -> None:
        t = row["target"]

        def put(name: str, value, *labels: str) -> None:
            if value is not None:
                fam[name].add_metric([t, *labels], float(value))

        last_ok = row.get("last_success_time")
        put("backupd_backup_age_seconds", (now - last_ok) if last_ok else None)
        put("backupd_backup_rpo_seconds", row.get("rpo_seconds"))
        put("backupd_backup_last_success", 0 if row["status"] in ("failed", "never") else 1)
        for status in BACKUP_STATUSES:
            put("backupd_backup_status", row["status"] == status, status)
        put("backupd_backup_last_duration_seconds", row.get("last_duration"))
        put("backupd_backup_last_success_timestamp_seconds", last_ok)
        put("backupd_backup_next_due_timestamp_seconds", row.get("next_due"))
        put("backupd_backup_suspect_generations", row.get("suspect_generations"))
        verdict = row.get("drill_status") or "never"
        for v in DRILL_VERDICTS:
            put("backupd_drill_verdict", verdict == v, v)
        put("backupd_drill_ready_seconds", row.get("drill_ready_seconds"))
        put("backupd_drill_last_timestamp_seconds", _unix(row.get("drill_time")))
        put("backupd_target_rto_seconds", row.get("rto_seconds"))
        verified = _unix(row.get("verified_snapshot_time"))
        put("backupd_verified_rpo_seconds", (now - verified) if verified else None)
        audit = row.get("immutability")
        if audit is not None:
            for status in AUDIT_RESULTS:
                put("backupd_storage_audit_status", audit == status, status)
        for dest, ratio in sorted((row.get("check_coverage_by_destination") or {}).items()):
            put("backupd_check_coverage_ratio", ratio, dest)


def registry(metrics: Metrics) -> CollectorRegistry:
    """A registry with the backupd collector and the process, platform and GC collectors."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    return reg


def render(reg: CollectorRegistry) -> str:
    return generate_latest(reg).decode("utf-8")


def write_textfile(path: Path, reg: CollectorRegistry) -> None:
    """Write atomically (temp file + rename) so the collector never reads half a file."""
    write_to_textfile(str(path), reg)


class Server:
    """GET /metrics on a loopback host:port from a daemon thread that sleeps until a request comes."""

    def __init__(self, host: str, port: int, reg: CollectorRegistry):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(f"metrics.listen: {host} is not a loopback address; "
                              "expose metrics through a proxy or the textfile collector")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = generate_latest(reg)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not worth a log line each
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("MetricsHTTPServer", (ThreadingHTTPServer,), {"address_family": family})
        try:
            self.httpd = server_class((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"metrics.listen: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        # poll_interval=None: select() blocks until a scrape arrives; no periodic wake-ups while idle.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": None},
                                       name="metrics-http", daemon=True)

    def start(self) -> "Server":
        self.thread.start()
        return self

    def stop(self) -> None:
        """shutdown() is only noticed when select() returns: connect until the thread is gone."""
        stopper = threading.Thread(target=self.httpd.shutdown, daemon=True)
        stopper.start()
        deadline = time.monotonic() + 5.0
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                pass
            self.thread.join(0.1)
        stopper.join(1.0)
        self.httpd.server_close()
