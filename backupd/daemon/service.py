"""The daemon's main loop: start due backups within the limits, persist outcomes, react to signals,
keep systemd, metrics and alerts up to date. Backups run in worker threads; the main thread only
schedules, so SIGTERM and SIGHUP are handled within one bounded sleep."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from backupd import evidence, execute
from backupd.actions import backup as backup_action
from backupd.actions import status as status_action
from backupd.actions.common import repository
from backupd.daemon import locks as daemon_locks
from backupd.daemon import log
from backupd.daemon import schedule
from backupd.daemon.jobs import Job, JobStore
from backupd.daemon.sdnotify import Notifier
from backupd.daemon.signals import Signals
from backupd.engine.exitcodes import RepositoryMissing
from backupd.errors import BackupdError
from backupd.notify import Alerts, Message

TICK = 1.0            # longest sleep: signals, finished jobs and the watchdog are seen within it
HEALTH_EVERY = 5.0    # seconds between status/metrics/alert evaluations while idle


@dataclass
class Running:
    job: Job
    repos: set[str]
    cancel: execute.Cancel
    thread: threading.Thread | None = None
    started: float = 0.0
    outcome: str | None = None        # ok | failed | cancelled, set by the worker
    errors: list[str] = field(default_factory=list)


class Service:
    """One daemon run. `load_policies()` returns a lint-clean policy set or raises ConfigError."""

    def __init__(self, cfg, load_policies, settings, notify_settings, metrics_settings, *,
                 once: bool = False, signals: Signals | None = None, sd: Notifier | None = None):
        self.cfg, self.load_policies, self.settings = cfg, load_policies, settings
        self.notify_settings, self.metrics_settings = notify_settings, metrics_settings
        self.once = once
        self.signals = signals or Signals()
        self.sd = sd or Notifier()
        self.store = JobStore(cfg.state_dir)
        self.policy_set = load_policies()
        self.jobs: dict[str, Job] = {}
        self.running: dict[str, Running] = {}
        self.started_at = time.time()
        self.alerts = Alerts(cfg.state_dir, notify_settings, log.event)
        self.metrics_server = None
        self.failures = 0
        self._last_health = 0.0
        self._status_text = ""
        self._last_watchdog = 0.0

    # ---- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM (or, with once, until the jobs due at start are done)."""
        self._reconcile()
        self._sweep_locks()
        self._start_metrics()
        targets = [t.name for t in self.policy_set.targets]
        once_jobs = {j.job for j in schedule.due_in_order(self.jobs, time.time())} if self.once else set()
        log.event("daemon_start", targets=len(targets), concurrency=self.settings.concurrency,
                  once=self.once, overdue=[j.target for j in schedule.due_in_order(self.jobs, time.time())])
        evidence.record(self.cfg, "daemon", {"event": "start", "targets": targets, "once": self.once})
        self.sd.ready(f"scheduling {len(targets)} targets")
        while not self.signals.stop.is_set():
            if self.signals.reload.is_set():
                self.signals.reload.clear()
                self.reload()
            finished = self._reap()
            self._start_due(once_jobs if self.once else None)
            now = time.time()
            if finished or now - self._last_health >= HEALTH_EVERY:
                self._health(now)
            self._ping()
            if self.once and not self.running and not (once_jobs & self._due_names()):
                break
            wake = schedule.next_wake(self.jobs)
            self.signals.sleep(min(TICK, max(0.05, (wake or now + TICK) - now)))
        return self._shutdown()

    def _shutdown(self) -> int:
        stopping = self.signals.stop.is_set()
        self.sd.stopping()
        if self.running:
            log.event("daemon_cancelling", jobs=sorted(self.running))
        for run in self.running.values():
            run.cancel.set()
        deadline = time.monotonic() + self.settings.stop_timeout_seconds
        for run in list(self.running.values()):
            run.thread.join(max(0.0, deadline - time.monotonic()))
        self._reap()
        left = sorted(self.running)
        if not left:
            self._sweep_locks()  # locks of the backups we just cancelled
        if left:
            log.event("daemon_stop_timeout", level="error", jobs=left)
        self._health(time.time())
        if self.metrics_server:
            self.metrics_server.stop()
        log.event("daemon_stop", signal=stopping, unfinished=left)
        evidence.record(self.cfg, "daemon", {"event": "stop", "unfinished": left})
        return 1 if (self.once and self.failures) else 0

    def reload(self) -> None:
        """SIGHUP: lint and load the policies again; keep the old set when they have errors."""
        self.sd.send("RELOADING=1", "STATUS=reloading policies")
        try:
            new = self.load_policies()
        except BackupdError as exc:
            log.event("reload_rejected", level="error", reason=str(exc)[:2000])
            evidence.record(self.cfg, "daemon", {"event": "reload_rejected", "reason": str(exc)[:2000]})
        else:
            self.policy_set = new
            self._reconcile()
            log.event("reload_ok", targets=[t.name for t in new.targets])
            evidence.record(self.cfg, "daemon", {"event": "reload", "targets": [t.name for t in new.targets]})
        self.sd.send("READY=1", f"STATUS={self._status_text or 'reloaded'}")

    # ---- scheduling ------------------------------------------------------------------------
    def _reconcile(self) -> None:
        stored = {**self.store.all(), **self.jobs}
        self.jobs = schedule.reconcile(stored, self.policy_set.targets, time.time(), self._drill_schedules())
        for job in self.jobs.values():
            self.store.save(job)

    def _drill_schedules(self) -> dict[str, dict[str, float]]:
        """target -> {"sample"|"full": seconds} from each target's restore_tests spec."""
        from backupd.drill.spec import spec_for

        out = {}
        for target in self.policy_set.targets:
            try:
                sched = spec_for(self.cfg, target).schedule
            except BackupdError as exc:
                log.event("drill_spec_unusable", level="error", target=target.name, error=str(exc)[:300])
                continue
            out[target.name] = {k: v.total_seconds() for k, v in (("sample", sched.sample), ("full", sched.full))
                                if v is not None}
        return out

    def _due_names(self) -> set[str]:
        return {j.job for j in schedule.due_in_order(self.jobs, time.time())}

    def _job_repos(self, job: Job) -> set[str]:
        """Repositories a job touches: a target's for backups and drills, every one for checks.
        Audits talk to S3 directly and run no restic."""
        kind = schedule.kind_of(job)
        if kind == "audit":
            return set()
        if job.target == schedule.ALL:
            return set().union(*(self._repo_keys(t) for t in self.policy_set.targets))
        return self._repo_keys(self.policy_set.target(job.target))

    def _repo_keys(self, target) -> set[str]:
        """Which repositories a target's backup touches (URL; the destination name as a fallback)."""
        keys = set()
        for name in target.destinations:
            dest = self.policy_set.destinations[name]
            try:
                keys.add(repository(self.cfg, name, dest).url)
            except BackupdError:
                keys.add(f"destination:{name}")
        return keys

    def _start_due(self, only: set[str] | None) -> None:
        busy = set().union(*(r.repos for r in self.running.values())) if self.running else set()
        for job in schedule.due_in_order(self.jobs, time.time()):
            if len(self.running) >= self.settings.concurrency:
                return
            if job.job in self.running or (only is not None and job.job not in only):
                continue
            repos = self._job_repos(job)
            if repos & busy:
                continue  # never two restic commands on one repository
            busy |= repos
            self._launch(job, repos)

    def _launch(self, job: Job, repos: set[str]) -> None:
        run = Running(job, repos, execute.Cancel(), started=time.time())
        self.store.started(job, run.started)
        run.thread = threading.Thread(target=self._work, args=(run, self.policy_set), daemon=True,
                                      name=job.job)
        self.running[job.job] = run
        log.event("job_start", job=job.job, target=job.target, overdue_seconds=round(run.started - job.next_due, 1))
        run.thread.start()

    def _work(self, run: Running, policy_set) -> None:
        """Worker thread: run one job (backup, drill, check or audit)."""
        if schedule.kind_of(run.job) != "backup":
            return self._work_other(run, policy_set)
        try:
            results = backup_action.run(self.cfg, policy_set, run.job.target, cancel=run.cancel)
            run.errors = [f"{r.destination}: {r.error}" for r in results if r.status != "ok"]
            if run.cancel.is_set():
                run.outcome = "cancelled"
            else:
                run.outcome = "ok" if results and all(r.status == "ok" for r in results) else "failed"
                for r in results:
                    if r.error and "is locked" in r.error:
                        self._triage_lock(policy_set, r.destination)
        except Exception as exc:  # one broken target must not take the daemon down
            run.outcome = "cancelled" if run.cancel.is_set() else "failed"
            run.errors = [f"{exc.__class__.__name__}: {str(exc)[:300]}"]
        finally:
            self.signals.wake.set()

    def _work_other(self, run: Running, policy_set) -> None:
        """Drills, checks and audits: their actions record state and evidence; status alerts on them."""
        from backupd.actions import audit as audit_action
        from backupd.actions import check as check_action
        from backupd.actions import drill as drill_action

        kind = schedule.kind_of(run.job)
        try:
            if kind.startswith("drill-"):
                results = drill_action.run(self.cfg, policy_set, run.job.target, full=kind == "drill-full",
                                           cancel=run.cancel)
            elif kind == "check":
                results = check_action.run(self.cfg, policy_set)
            else:
                results = audit_action.run(self.cfg, policy_set)
            bad = [r for r in results if r.get("status") not in ("ok", "skipped")]
            run.errors = [f"{r.get('target') or r.get('destination')}: "
                          f"{r.get('reason') or r.get('error') or r.get('status')}" for r in bad]
            run.outcome = "cancelled" if run.cancel.is_set() else ("failed" if bad else "ok")
        except Exception as exc:  # a broken drill must not take the daemon down
            run.outcome = "cancelled" if run.cancel.is_set() else "failed"
            run.errors = [f"{exc.__class__.__name__}: {str(exc)[:300]}"]
        finally:
            self.signals.wake.set()

    def _sweep_locks(self) -> None:
        """At start and after cancelling: one pass over every repository, no waiting."""
        for name in sorted({d for t in self.policy_set.targets for d in t.destinations}):
            try:
                self._triage_lock(self.policy_set, name, wait=0.0, quiet=True)
            except RepositoryMissing:
                pass  # not initialised yet: nothing can be locked
            except BackupdError as exc:
                log.event("lock_sweep_failed", level="warning", destination=name, error=str(exc)[:300])

    def _triage_lock(self, policy_set, dest_name: str, wait: float | None = None, quiet: bool = False) -> None:
        """Our backup met a lock: remove it only if provably stale, else wait (bounded) and report."""
        repo = repository(self.cfg, dest_name, policy_set.destinations[dest_name])
        res = daemon_locks.resolve(repo, wait_seconds=self.settings.lock_wait_seconds if wait is None else wait,
                                   sleep=self.signals.stop.wait)
        if quiet and res.outcome == "clear":
            return
        data = {"destination": dest_name, "removed": res.removed, "holders": res.holders}
        log.event(f"repository_lock_{res.outcome}", level="warning" if res.outcome == "locked" else "info", **data)
        evidence.record(self.cfg, "daemon", {"event": f"lock_{res.outcome}", **data})

    def _reap(self) -> bool:
        """Persist the outcome of finished workers; True when any finished."""
        done = [name for name, run in self.running.items() if not run.thread.is_alive()]
        for name in done:
            run = self.running.pop(name)
            job, now = run.job, time.time()
            job.last_finished, job.last_status = now, run.outcome or "failed"
            if run.outcome in ("ok", "failed"):
                job.next_due = schedule.next_due(job, run.outcome == "ok", run.started, now,
                                                 self.settings.jitter_seconds, self.settings.retry_seconds)
            self.store.save(job)
            self.failures += run.outcome == "failed"
            log.event("job_end", level="info" if run.outcome == "ok" else "error", job=job.job,
                      target=job.target, outcome=run.outcome, seconds=round(now - run.started, 1),
                      errors=run.errors[:5], next_due=round(job.next_due, 1))
            if run.outcome in ("ok", "failed") and schedule.kind_of(job) == "backup":
                self._alert_backup(job.target, run.outcome == "failed", run.errors, now)
        return bool(done)

    # ---- health: status text, metrics, alerts ----------------------------------------------
    def _alert_backup(self, target: str, failed: bool, errors: list[str], now: float) -> None:
        summary = (f"backup of {target} failed" if failed else f"backup of {target} succeeded again")
        self.alerts.update(f"backup_failed:{target}", failed, Message(
            "backup_failed", "firing" if failed else "resolved", target, self.cfg.host or "", summary,
            {"errors": errors[:5]}, now))

    def _health(self, now: float) -> None:
        self._last_health = now
        rows = status_action.run(self.cfg, self.policy_set)
        grace = self.notify_settings.rpo_grace_seconds
        for row in rows:
            job = self.jobs.get(schedule.job_name(row["target"]))
            row["next_due"] = job.next_due if job else None
            rpo = row["rpo_seconds"]
            age = row["age_seconds"] if row["age_seconds"] is not None else now - self.started_at
            breached = age > rpo + grace
            summary = (f"{row['target']}: last good backup {row['age'] or 'never'} ago exceeds RPO {row['rpo']}"
                       if breached else f"{row['target']}: back within RPO {row['rpo']}")
            self.alerts.update(f"rpo_breach:{row['target']}", breached, Message(
                "rpo_breach", "firing" if breached else "resolved", row["target"], self.cfg.host or "",
                summary, {"age_seconds": row["age_seconds"], "rpo_seconds": rpo, "status": row["status"]}, now))
            self._alert_conditions(row, now)
        self._publish_metrics(rows)
        self._update_status(rows, now)

    #: (kind, is it firing for a status row, what the alert says)
    CONDITIONS = (
        ("drill", lambda r: r.get("drill_status") in ("warn", "fail"),
         lambda r: f"{r['target']}: last restore drill {r.get('drill_verdict')} "
                   f"(ready {r.get('drill_ready_seconds')}s, RTO {r.get('rto') or 'unset'})"),
        ("storage_audit", lambda r: r.get("immutability") == "finding",
         lambda r: f"{r['target']}: the last storage audit of its destination found a problem"),
        ("log_silent", lambda r: bool(r.get("log_silent")),
         lambda r: f"{r['target']}: the newest log generation brought no new data; is the log source off?"),
    )

    def _alert_conditions(self, row: dict, now: float) -> None:
        """Drill WARN/FAIL, storage-audit findings and silent log sources: one alert, one resolution."""
        for kind, firing_of, summary_of in self.CONDITIONS:
            firing = firing_of(row)
            summary = summary_of(row) if firing else f"{row['target']}: {kind.replace('_', ' ')} condition cleared"
            self.alerts.update(f"{kind}:{row['target']}", firing, Message(
                kind, "firing" if firing else "resolved", row["target"], self.cfg.host or "", summary, {}, now))

    def _start_metrics(self) -> None:
        if self.metrics_settings.listen:
            from backupd.metrics import Server

            self.metrics_server = Server(*self.metrics_settings.listen).start()
            log.event("metrics_listen", address=f"{self.metrics_settings.listen[0]}:{self.metrics_server.port}")

    def _publish_metrics(self, rows: list[dict]) -> None:
        if not (self.metrics_server or self.metrics_settings.textfile):
            return
        from backupd import metrics

        text = metrics.render(rows, {"backupd_daemon_running_jobs": len(self.running),
                                     "backupd_daemon_start_timestamp_seconds": self.started_at})
        if self.metrics_server:
            self.metrics_server.update(text)
        if self.metrics_settings.textfile:
            try:
                metrics.write_textfile(self.metrics_settings.textfile, text)
            except OSError as exc:
                log.event("metrics_textfile_failed", level="error", error=exc.strerror)

    def _update_status(self, rows: list[dict], now: float) -> None:
        bad = sum(r["status"] != "ok" for r in rows)
        upcoming = min(self.jobs.values(), key=lambda j: j.next_due, default=None)
        text = (f"{len(rows)} targets, {bad} not ok; running: {', '.join(sorted(r.job.target for r in self.running.values())) or '-'}"
                + (f"; next {upcoming.target} in {max(0, round(upcoming.next_due - now))}s" if upcoming else ""))
        if text != self._status_text:
            self._status_text = text
            self.sd.status(text)

    def _ping(self) -> None:
        interval = self.sd.watchdog_interval
        if interval and time.monotonic() - self._last_watchdog >= min(interval, 10.0):
            self._last_watchdog = time.monotonic()
            self.sd.watchdog()
