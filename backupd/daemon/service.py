"""The daemon's main loop: start due jobs within the limits, persist outcomes, react to signals, keep
systemd, metrics and alerts up to date.

READY=1 is sent after local work only (state, policies, metrics socket): everything that talks to
storage (lock sweeps, evidence mirror pushes, restic) runs in worker threads afterwards, so a storage
outage never delays the start. Each job probes its S3 destinations first and leaves out those that do
not answer; the outage alerts once and resolves once. Between events the main thread sleeps until the
next due job, the next RPO boundary or the watchdog, whichever is first: no polling while idle.
Alerts are delivered from the outbox by their own thread (backupd.notify)."""

from __future__ import annotations

import ctypes
import gc
import queue
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field

from backupd import evidence
from backupd.actions import backup as backup_action
from backupd.actions import status as status_action
from backupd.actions import locks as repo_locks
from backupd.actions.common import repository
from backupd.daemon import log
from backupd.daemon import reach
from backupd.daemon import schedule
from backupd.daemon.sdnotify import Notifier
from backupd.daemon.signals import Signals
from backupd.engine.exitcodes import RepositoryMissing
from backupd.errors import BackupdError
from backupd.evidence.guard import LedgerRegression
from backupd.notify import Alerts, Message
from backupd.process import execute
from backupd.state.jobs import Job, JobStore, job_name
from backupd.state.runs import State

LONGEST_SLEEP = 3600.0  # an upper bound only: signals and finished jobs wake the loop at once
CHECKPOINT_RECHECK = 300.0  # after queueing a checkpoint push: when to look again
HEALTH_EVERY = 300.0    # when the loop wakes anyway (e.g. the watchdog), re-evaluate if older than this


@dataclass
class Running:
    job: Job
    repos: set[str]
    cancel: execute.Cancel
    thread: threading.Thread | None = None
    started: float = 0.0
    outcome: str | None = None        # ok | failed | cancelled, set by the worker before it wakes the loop
    errors: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)   # destination -> why (probe or restic)
    reachable: set[str] = field(default_factory=set)            # destinations that answered


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
        self._launched: set[str] = set()
        self.started_at = time.time()
        self.ready_seconds: float | None = None
        self.alerts = Alerts(cfg.state_dir, notify_settings, log.event)
        self.metrics = None
        self.metrics_server = None
        self.failures = 0
        self.down: dict[str, str] = {}      # destination -> why it is unreachable
        self.reachable: set[str] = set()    # destinations that answered since the start
        self._swept: set[str] = set()       # destinations whose stale locks were swept this run
        self._side: queue.Queue = queue.Queue()
        self._side_thread: threading.Thread | None = None
        self._last_health = 0.0
        self._next_health: float | None = None
        self._next_checkpoint: float | None = None  # when the evidence mirror wants its next signed checkpoint
        self._mirror_lag: dict | None = None  # evidence/lag.py, for the metrics
        self._status_text = ""
        self._last_watchdog = 0.0

    # ---- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM (or, with once, until the jobs due at start are done)."""
        self._reconcile()
        self._start_metrics()
        if not self.once:
            self.alerts.start()
        targets = [t.name for t in self.policy_set.targets]
        overdue = schedule.due_in_order(self.jobs, time.time())
        once_jobs = {j.job for j in overdue} if self.once else set()
        self.sd.ready(f"scheduling {len(targets)} targets")
        self.ready_seconds = round(time.time() - self.started_at, 3)
        log.event("daemon_start", targets=len(targets), concurrency=self.settings.concurrency,
                  once=self.once, overdue=[j.target for j in overdue], ready_seconds=self.ready_seconds)
        self._start_side()
        self._side_record({"event": "start", "targets": targets, "once": self.once})
        while not self.signals.stop.is_set():
            if self.signals.reload.is_set():
                self.signals.reload.clear()
                self.reload()
            finished = self._reap()
            if self.once:
                once_jobs -= set(self.running) | self._launched  # --once: each job due at start runs once
            self._start_due(once_jobs if self.once else None)
            now = time.time()
            if finished or self._health_due(now):
                self._health(now)
            self._ping()
            if self.once and not self.running and not (once_jobs & self._due_names()):
                break
            self.signals.sleep(self._sleep_seconds(time.time()))
        return self._shutdown()

    def _sleep_seconds(self, now: float) -> float:
        """Until the next due job, RPO boundary or watchdog ping (jobs and signals wake us earlier)."""
        wakes = [schedule.next_wake(self.jobs), self._next_health, self._next_checkpoint]
        if self.sd.watchdog_interval:
            wakes.append(self._last_watchdog + self.sd.watchdog_interval)
        soonest = min((w for w in wakes if w is not None), default=now + LONGEST_SLEEP)
        return min(LONGEST_SLEEP, max(0.0, soonest - now))

    def _health_due(self, now: float) -> bool:
        return (not self._last_health or now - self._last_health >= HEALTH_EVERY
                or (self._next_health is not None and now >= self._next_health)
                or (self._next_checkpoint is not None and now >= self._next_checkpoint))

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
        # only where a cancelled job's probe got an answer could restic have left a lock: a destination that
        # never answered is not probed again here (a black hole would hold the stop up for the probe's timeout)
        cancelled = {d for run in self.running.values() for d in run.reachable}
        self._reap()
        left = sorted(self.running)
        if not left:
            self._sweep_after_cancel(cancelled)  # locks of the jobs we just cancelled
        if left:
            log.event("daemon_stop_timeout", level="error", jobs=left)
        self._health(time.time())
        self._stop_side(max(1.0, deadline - time.monotonic()))
        self.alerts.stop(timeout=5.0)
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
            self._side_record({"event": "reload_rejected", "reason": str(exc)[:2000]})
        else:
            self.policy_set = new
            self._reconcile()
            self._last_health = 0.0  # new targets: evaluate at once
            log.event("reload_ok", targets=[t.name for t in new.targets])
            self._side_record({"event": "reload", "targets": [t.name for t in new.targets]})
        self.sd.send("READY=1", f"STATUS={self._status_text or 'reloaded'}")

    # ---- side work: evidence records that may push to the WORM mirror ----------------------
    def _start_side(self) -> None:
        self._side_thread = threading.Thread(target=self._side_loop, name="evidence-side", daemon=True)
        self._side_thread.start()

    def _side_loop(self) -> None:
        """Blocks on the queue (no polling); None ends it."""
        while (data := self._side.get()) is not None:
            try:
                data() if callable(data) else evidence.record(self.cfg, "daemon", data)
            except Exception as exc:  # the ledger is local; a failure here is logged, never fatal
                log.event("evidence_record_failed", level="error", error=f"{exc.__class__.__name__}: {exc}"[:300])
                if isinstance(exc, LedgerRegression):  # alert now, not at the next health round
                    self._last_health = 0.0
                    self.signals.wake.set()

    def _side_record(self, data: dict) -> None:
        """A daemon evidence record, written (and mirrored) off the main thread."""
        if self._side_thread is None:
            evidence.record(self.cfg, "daemon", data)
        else:
            self._side.put(data)

    def _stop_side(self, timeout: float) -> None:
        if self._side_thread is not None:
            self._side.put(None)
            self._side_thread.join(timeout)

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

    def _destinations_of(self, job: Job) -> list[str]:
        """Destinations a job touches: its target's, or every target's for checks and audits."""
        if job.target == schedule.ALL:
            return sorted({d for t in self.policy_set.targets for d in t.destinations})
        try:
            return list(self.policy_set.target(job.target).destinations)
        except BackupdError:
            return []

    def _job_repos(self, job: Job) -> set[str]:
        """Repositories a job touches: a target's for backups and drills, every one for checks.
        Audits talk to S3 directly and run no restic."""
        if schedule.kind_of(job) == "audit":
            return set()
        return set().union(*(self._repo_keys([d]) for d in self._destinations_of(job)))

    def _repo_keys(self, names) -> set[str]:
        """Repository keys of destinations (URL; the destination name as a fallback)."""
        keys = set()
        for name in names:
            try:
                keys.add(repository(self.cfg, name, self.policy_set.destinations[name]).url)
            except (BackupdError, KeyError):
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
        self._launched.add(job.job)
        log.event("job_start", job=job.job, target=job.target, overdue_seconds=round(run.started - job.next_due, 1))
        run.thread.start()

    def _work(self, run: Running, policy_set) -> None:
        """Worker thread: probe the storage, sweep stale locks once, run one job. The stop signal ends a
        probe at once (execute.cancelled_by), not at its timeout."""
        try:
            with execute.cancelled_by(run.cancel):
                view = self._prepare(run, policy_set)
            if view is None:
                run.outcome = "failed"
            elif schedule.kind_of(run.job) == "backup":
                self._work_backup(run, view)
            else:
                self._work_other(run, view)
        except Exception as exc:  # one broken target must not take the daemon down
            run.outcome = "cancelled" if run.cancel.is_set() else "failed"
            run.errors = [f"{exc.__class__.__name__}: {str(exc)[:300]}"]
        finally:
            run.outcome = run.outcome or "failed"
            self.signals.wake.set()

    def _prepare(self, run: Running, policy_set):
        """Probe the job's S3 destinations; sweep each reachable one's stale locks the first time.
        Returns the policy set without the unreachable destinations, or None when none is left."""
        names = [d for d in self._destinations_of(run.job) if d in policy_set.destinations]
        for name in names:
            why = reach.probe(policy_set.destinations[name])
            if why:
                run.unreachable[name] = why
                continue
            run.reachable.add(name)
            if name not in self._swept and schedule.kind_of(run.job) != "audit":
                self._sweep(policy_set, name)
        if names and not run.reachable:
            run.errors = [f"{d}: {why}" for d, why in sorted(run.unreachable.items())]
            return None
        return reach.without(policy_set, set(run.unreachable))

    def _work_backup(self, run: Running, policy_set) -> None:
        results = backup_action.run(self.cfg, policy_set, run.job.target, cancel=run.cancel)
        run.errors = [f"{r.destination}: {r.error}" for r in results if r.status != "ok"]
        run.errors += [f"{d}: skipped, {why}" for d, why in sorted(run.unreachable.items())]
        for r in results:
            if r.status == "unavailable":
                run.unreachable[r.destination] = (r.error or "unavailable")[:300]
                run.reachable.discard(r.destination)
        if run.cancel.is_set():
            run.outcome = "cancelled"
            return
        good = results and all(r.status == "ok" for r in results) and not run.unreachable
        run.outcome = "ok" if good else "failed"
        for r in results:
            if r.error and "is locked" in r.error:
                self._triage_lock(policy_set, r.destination)

    def _work_other(self, run: Running, policy_set) -> None:
        """Drills, checks and audits: their actions record state and evidence; status alerts on them."""
        from backupd.actions import audit as audit_action
        from backupd.actions import check as check_action
        from backupd.actions import drill as drill_action
        from backupd.actions import drill_userns

        kind = schedule.kind_of(run.job)
        userns = drill_userns.namespace()
        if kind.startswith("drill-") and userns:  # probes never as the daemon's uid (see drill_userns)
            results = drill_userns.run(self.cfg, run.job.target, full=kind == "drill-full", userns=userns,
                                       cancel=run.cancel)
        elif kind.startswith("drill-"):
            results = drill_action.run(self.cfg, policy_set, run.job.target, full=kind == "drill-full",
                                       cancel=run.cancel)
        elif kind == "check":
            results = check_action.run(self.cfg, policy_set, cancel=run.cancel)
        else:
            results = audit_action.run(self.cfg, policy_set)
        bad = [r for r in results if r.get("status") not in ("ok", "skipped")]
        run.errors = [f"{r.get('target') or r.get('destination')}: "
                      f"{r.get('reason') or r.get('error') or r.get('status')}" for r in bad]
        run.errors += [f"{d}: skipped, {why}" for d, why in sorted(run.unreachable.items())]
        run.outcome = "cancelled" if run.cancel.is_set() else ("failed" if bad or run.unreachable else "ok")

    def _sweep(self, policy_set, name: str) -> None:
        """Remove provably stale locks of one repository, once per run, before our first job on it."""
        try:
            self._triage_lock(policy_set, name, wait=0.0, quiet=True)
        except RepositoryMissing:
            pass  # not initialised yet: nothing can be locked
        except BackupdError as exc:
            log.event("lock_sweep_failed", level="warning", destination=name, error=str(exc)[:300])
            return
        self._swept.add(name)

    def _sweep_after_cancel(self, names: set[str]) -> None:
        """After cancelling jobs at stop: one pass over their reachable repositories, no waiting."""
        for name in sorted(names):
            dest = self.policy_set.destinations.get(name)
            if dest is not None and name not in self.down and not reach.probe(dest):
                self._sweep(self.policy_set, name)

    def _triage_lock(self, policy_set, dest_name: str, wait: float | None = None, quiet: bool = False) -> None:
        """Our backup met a lock: remove it only if provably stale, else wait (bounded) and report."""
        repo = repository(self.cfg, dest_name, policy_set.destinations[dest_name])
        res = repo_locks.resolve(repo, wait_seconds=self.settings.lock_wait_seconds if wait is None else wait,
                                   sleep=self.signals.stop.wait)
        if quiet and res.outcome == "clear":
            return
        data = {"destination": dest_name, "removed": res.removed, "holders": res.holders}
        log.event(f"repository_lock_{res.outcome}", level="warning" if res.outcome == "locked" else "info", **data)
        evidence.record(self.cfg, "daemon", {"event": f"lock_{res.outcome}", **data})

    def _reap(self) -> bool:
        """Persist the outcome of finished workers; True when any finished. A worker counts as
        finished once it set its outcome (it may still be returning from its thread)."""
        done = [name for name, run in self.running.items()
                if run.outcome is not None or not run.thread.is_alive()]
        for name in done:
            run = self.running.pop(name)
            run.thread.join(5.0)
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
            self._track_outages(run, now)
            if run.outcome in ("ok", "failed") and schedule.kind_of(job) == "backup":
                self._alert_backup(job.target, run.outcome == "failed", run.errors, now)
        if done and not self.running:
            release_memory()
        return bool(done)

    def _track_outages(self, run: Running, now: float) -> None:
        """A destination that did not answer opens an outage alert; the next one that answers ends it."""
        if run.outcome == "cancelled":
            return
        for name, why in sorted(run.unreachable.items()):
            if name not in self.down:
                log.event("storage_outage", level="error", destination=name, reason=why)
            self.down[name] = why
            self.alerts.update(f"storage_outage:{name}", True, Message(
                "storage_outage", "firing", name, self.cfg.host or "",
                f"destination {name} unreachable: {why}; backups to it are skipped and retried", {"reason": why},
                now))
        for name in sorted(run.reachable - set(run.unreachable)):
            self.reachable.add(name)
            if self.down.pop(name, None) is not None:
                log.event("storage_outage_end", destination=name)
            self.alerts.update(f"storage_outage:{name}", False, Message(
                "storage_outage", "resolved", name, self.cfg.host or "", f"destination {name} reachable again",
                {}, now))

    # ---- health: status text, metrics, alerts ----------------------------------------------
    def _alert_backup(self, target: str, failed: bool, errors: list[str], now: float) -> None:
        summary = (f"backup of {target} failed" if failed else f"backup of {target} succeeded again")
        self.alerts.update(f"backup_failed:{target}", failed, Message(
            "backup_failed", "firing" if failed else "resolved", target, self.cfg.host or "", summary,
            {"errors": errors[:5]}, now))

    def _health(self, now: float) -> None:
        """Status rows -> RPO and condition alerts, metrics, systemd status; and when the next RPO
        boundary falls, so the loop wakes for it instead of polling."""
        self._last_health = now
        rows = status_action.run(self.cfg, self.policy_set)
        suspects = suspect_generations(self.cfg.state_dir)
        grace = self.notify_settings.rpo_grace_seconds
        boundaries = []
        for row in rows:
            job = self.jobs.get(job_name(row["target"]))
            row["next_due"] = job.next_due if job else None
            row["suspect_generations"] = suspects.get(row["target"], 0)
            rpo = row["rpo_seconds"]
            since = row["last_success_time"] if row["age_seconds"] is not None else self.started_at
            breached = now - since > rpo + grace
            if not breached:
                boundaries.append(since + rpo + grace + 1.0)
            summary = (f"{row['target']}: last good backup {row['age'] or 'never'} ago exceeds RPO {row['rpo']}"
                       if breached else f"{row['target']}: back within RPO {row['rpo']}")
            self.alerts.update(f"rpo_breach:{row['target']}", breached, Message(
                "rpo_breach", "firing" if breached else "resolved", row["target"], self.cfg.host or "",
                summary, {"age_seconds": row["age_seconds"], "rpo_seconds": rpo, "status": row["status"]}, now))
            self._alert_conditions(row, now)
            if row.get("offline_status") == "ok" and row.get("offline_due"):
                boundaries.append(row["offline_due"] + 1.0)  # wake when the offline copy turns too old
        self._next_health = min(boundaries, default=None)
        self._evidence_health(now)
        self._foreign_health(now)
        self._mirror_health(now)
        self._publish_metrics(rows)
        self._update_status(rows, now)

    def _evidence_health(self, now: float) -> None:
        """Alert on a ledger head regression; push a signed checkpoint to the mirror when due (side thread)."""
        from backupd.evidence import guard, mirror
        from backupd.evidence.ledger import evidence_dir

        found = guard.open_finding(evidence_dir(self.cfg.state_dir))
        summary = ("evidence ledger head regression: " + "; ".join(map(str, found.get("reasons") or []))[:1000]
                   if found else "evidence ledger head regression acknowledged; appends resumed")
        self.alerts.update("evidence_regression", bool(found), Message(
            "evidence_regression", "firing" if found else "resolved", "evidence", self.cfg.host or "", summary,
            {"found": found.get("time"), "source": found.get("source")} if found else {}, now))
        due = None if found else mirror.checkpoint_due(self.cfg)
        if due is not None and due <= 0 and self._side_thread is not None:
            self._side.put(lambda: mirror.push_if_configured(self.cfg))
            due = CHECKPOINT_RECHECK  # by then pushed (the next is a period away) or the mirror was down: retry
        self._next_checkpoint = now + due if due is not None else None

    def _foreign_health(self, now: float) -> None:
        """Alert once while objects another identity planted under this host's evidence prefix are open (the
        mirror noted them, foreign.py; local state only), and once when `evidence acknowledge` closed them."""
        from backupd.evidence import foreign
        from backupd.evidence.ledger import evidence_dir

        found = (foreign.open_finding(evidence_dir(self.cfg.state_dir)) or {}).get("objects") or []
        named = ", ".join(str(o.get("key")) for o in found[:5] if isinstance(o, dict))
        self.alerts.update("evidence_foreign_objects", bool(found), Message(
            "evidence_foreign_objects", "firing" if found else "resolved", "evidence", self.cfg.host or "",
            f"{len(found)} object(s) in this host's evidence prefix not signed by it: another identity wrote there "
            f"({named}); see `backupd status`, then `backupd evidence acknowledge`" if found
            else "foreign objects in this host's evidence prefix acknowledged", {"objects": len(found)}, now))

    def _mirror_health(self, now: float) -> None:
        """Alert once when records stay unmirrored, or the newest checkpoint ages, beyond twice the checkpoint
        period (evidence/lag.py, local state only), and once when that ends; retry pending records from the
        side thread; wake when the lag would turn stale."""
        from backupd.evidence import lag, mirror

        found = self._mirror_lag = lag.of(self.cfg)
        if found is None:
            return
        stale = found["unmirrored_stale"] or found["checkpoint_stale"]
        self.alerts.update("evidence_mirror_lag", stale, Message(
            "evidence_mirror_lag", "firing" if stale else "resolved", found["mirror"], self.cfg.host or "",
            lag.summary(found) if stale else f"evidence mirror {found['mirror']}: caught up again",
            {k: found[k] for k in ("unmirrored_records", "unmirrored_oldest_age_seconds", "checkpoint_age_seconds",
                                   "stale_after_seconds")}, now))
        wakes = [self._next_checkpoint, now + w if (w := lag.stale_in(found)) is not None else None]
        if found["unmirrored_records"] and self._side_thread is not None:
            if self._side.empty():
                self._side.put(lambda: mirror.push_if_configured(self.cfg))
            wakes.append(now + CHECKPOINT_RECHECK)  # pending records: try again then
        self._next_checkpoint = min((w for w in wakes if w is not None), default=None)

    #: (kind, is it firing for a status row, what the alert says)
    CONDITIONS = (
        ("suspect_generation", lambda r: r.get("state") == "suspect",
         lambda r: f"{r['target']}: the newest generation was flagged suspect (ransomware-like change, an edited "
                   "log or lost rows); it stays flagged until the sources are restored or `backupd accept`"),
        ("drill", lambda r: r.get("drill_status") in ("warn", "fail", "suspect"),
         lambda r: f"{r['target']}: last restore drill {r.get('drill_verdict')} "
                   f"(ready {r.get('drill_ready_seconds')}s, RTO {r.get('rto') or 'unset'})"),
        ("storage_audit", lambda r: r.get("immutability") == "finding",
         lambda r: f"{r['target']}: the last storage audit of its destination found a problem"),
        ("log_silent", lambda r: bool(r.get("log_silent")),
         lambda r: f"{r['target']}: the newest log generation brought no new data; is the log source off?"),
        ("offline_copy", lambda r: r.get("offline_status") in ("stale", "never"),
         lambda r: f"{r['target']}: " + (f"newest offline copy (on {r.get('offline_medium')}) is older than "
                                         f"offline.max_age {r.get('offline_max_age')}" if r.get("offline_medium")
                                         else "no read-back-verified offline copy")
                   + "; attach the next medium of the rotation and run backupd media sync"),
    )

    def _alert_conditions(self, row: dict, now: float) -> None:
        """Drill WARN/FAIL, storage-audit findings and silent log sources: one alert, one resolution."""
        for kind, firing_of, summary_of in self.CONDITIONS:
            firing = firing_of(row)
            summary = summary_of(row) if firing else f"{row['target']}: {kind.replace('_', ' ')} condition cleared"
            self.alerts.update(f"{kind}:{row['target']}", firing, Message(
                kind, "firing" if firing else "resolved", row["target"], self.cfg.host or "", summary, {}, now))

    def _start_metrics(self) -> None:
        if not (self.metrics_settings.listen or self.metrics_settings.textfile):
            return
        from backupd.daemon import metrics

        self.metrics = metrics.Metrics()
        self._registry = metrics.registry(self.metrics)
        if self.metrics_settings.listen:
            self.metrics_server = metrics.Server(*self.metrics_settings.listen, self._registry).start()
            log.event("metrics_listen", address=f"{self.metrics_settings.listen[0]}:{self.metrics_server.port}")

    def _publish_metrics(self, rows: list[dict]) -> None:
        if self.metrics is None:
            return
        from backupd.daemon import metrics

        names = {d for t in self.policy_set.targets for d in t.destinations}
        self.metrics.update(rows, {
            "running_jobs": lambda: len(self.running), "outbox": self.alerts.depth,
            "start_time": self.started_at, "ready_seconds": self.ready_seconds, "evidence_mirror": self._mirror_lag,
            "reachable": {d: d not in self.down for d in names if d in self.down or d in self.reachable}})
        if self.metrics_settings.textfile:
            try:
                metrics.write_textfile(self.metrics_settings.textfile, self._registry)
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
        """WATCHDOG=1 every WatchdogSec/2 (the loop wakes for it)."""
        interval = self.sd.watchdog_interval
        if interval and time.time() - self._last_watchdog >= interval * 0.95:
            self._last_watchdog = time.time()
            self.sd.watchdog()


def release_memory() -> None:
    """After the last running job: hand freed heap back to the kernel. Worker threads leave their
    malloc arenas full of free blocks that would otherwise stay resident for the whole idle period."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


def suspect_generations(state_dir) -> dict[str, int]:
    """target -> successful backups whose change was judged suspect (ransomware-like)."""
    with closing(sqlite3.connect(State(state_dir).path, timeout=30)) as db:
        rows = db.execute("SELECT target, COUNT(*) FROM runs WHERE job='backup' AND status='ok'"
                          " AND json_extract(detail, '$.facts.change.suspicious') = 1 GROUP BY target").fetchall()
    return dict(rows)
