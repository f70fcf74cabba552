"""The idle daemon sleeps until something is due: the loop's timeout, the alert sender waking only for
work, storage probes and the per-job view of the policy without unreachable destinations."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from types import SimpleNamespace

from backupd.daemon import reach
from backupd.daemon.service import LONGEST_SLEEP, Service
from backupd.daemon.settings import NotifySettings
from backupd.notify import Alerts, Message
from backupd.state.jobs import Job

NOW = 1_800_000_000.0


def _svc(next_due: float, next_health=None, watchdog=None, last_ping=NOW):
    return SimpleNamespace(jobs={"backup:a": Job("backup:a", "a", 86400, next_due)}, _next_health=next_health,
                           _next_checkpoint=None,
                           sd=SimpleNamespace(watchdog_interval=watchdog), _last_watchdog=last_ping)


def test_the_loop_sleeps_until_the_next_due_job_rpo_boundary_or_watchdog():
    assert Service._sleep_seconds(_svc(NOW + 7200), NOW) == 3600.0 == LONGEST_SLEEP  # bounded, not polling
    assert Service._sleep_seconds(_svc(NOW + 600), NOW) == 600.0
    assert Service._sleep_seconds(_svc(NOW + 600, next_health=NOW + 90), NOW) == 90.0
    assert Service._sleep_seconds(_svc(NOW + 600, watchdog=60.0, last_ping=NOW - 20), NOW) == 40.0
    assert Service._sleep_seconds(_svc(NOW - 5), NOW) == 0.0  # overdue: no sleep at all


def test_the_sender_thread_delivers_when_kicked(tmp_path):
    got, ready = [], threading.Event()

    def channel(m):
        got.append(m.target)
        ready.set()

    alerts = Alerts(tmp_path, NotifySettings(rate_limit_per_hour=10), lambda *a, **k: None,
                    send_to={"test": channel}).start()
    try:
        alerts.update("backup_failed:a", True, Message("backup_failed", "firing", "a", "h", "a failed", {},
                                                        time.time()))
        assert ready.wait(10) and got == ["a"]
    finally:
        alerts.stop(5)
    assert not alerts.sender.is_alive() and alerts.depth() == (0, None)


def test_probe_names_an_unreachable_s3_endpoint_and_skips_local_ones():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        why = reach.probe(SimpleNamespace(kind="s3", endpoint=f"http://127.0.0.1:{port}"))
    assert why and f"127.0.0.1:{port}" in why
    assert reach.probe(SimpleNamespace(kind="local", path="/mnt/usb")) is None
    server = http.server.HTTPServer(("127.0.0.1", 0), _Forbidden)  # any HTTP answer is reachable
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert reach.probe(SimpleNamespace(kind="s3", endpoint=f"http://127.0.0.1:{server.server_port}")) is None
    finally:
        server.shutdown()
    with socket.socket() as s:  # accepts and never answers: a black hole is unreachable too
        s.bind(("127.0.0.1", 0))
        s.listen()
        why = reach.probe(SimpleNamespace(kind="s3", endpoint=f"http://127.0.0.1:{s.getsockname()[1]}"), timeout=1)
    assert why and "no answer" in why


class _Forbidden(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 - http.server's naming
        self.send_response(403)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_job_sees_the_policy_without_unreachable_destinations(tmp_path):
    from backupd.policy.lint import PolicySet
    from backupd.policy.loader import LoadedPolicy
    from backupd.policy.schema import Policy

    policy = Policy.model_validate({
        "version": 1,
        "destinations": {"usb": {"kind": "local", "path": "/mnt/usb", "password_file": "/x"}},
        "targets": [{"name": "docs", "category": "documentation", "owner": "o", "sources": {"paths": ["/srv"]},
                     "frequency": "1h", "destinations": ["worm", "usb"]}]})
    ps = PolicySet([LoadedPolicy(tmp_path / "p.yaml", policy)])
    view = reach.without(ps, {"worm"})
    assert view.target("docs").destinations == ["usb"] and ps.target("docs").destinations == ["worm", "usb"]
    assert reach.without(ps, set()) is ps


def test_a_signal_taken_by_another_thread_still_wakes_the_sleeping_loop():
    import signal

    from backupd.daemon.signals import Signals

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    old_fd = signal.set_wakeup_fd(-1)
    sig = Signals()
    sig.install()
    try:
        # The kernel may hand a process signal to any thread; Python runs the handler in the main
        # thread only. Send SIGHUP to a helper thread while the main thread sleeps.
        helper = threading.Thread(target=lambda: (time.sleep(0.2),
                                                  signal.pthread_kill(threading.get_ident(), signal.SIGHUP)))
        helper.start()
        t0 = time.monotonic()
        sig.sleep(120)
        woke_after = time.monotonic() - t0
        helper.join()
        for _ in range(100):  # the handler runs at the main thread's next bytecode boundary
            if sig.reload.is_set():
                break
            time.sleep(0.01)
        assert sig.reload.is_set() and woke_after < 60, "SIGHUP must end the idle sleep"
        sig.wake.set()
        sig.sleep(120)  # a worker's wake-up ends it as well
    finally:
        signal.set_wakeup_fd(old_fd)
        for s, handler in old.items():
            signal.signal(s, handler)
