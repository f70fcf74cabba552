"""The executor: process groups, pipelines that never commit a failed producer's output."""

import sys

from backupd.process import execute
from backupd.sources.postgres import DumpFacts, dump_argv

PY = sys.executable


def test_run_captures_and_scrubs_secrets():
    env = execute.Environment(secret={"TOKEN": "hunter2-secret"})
    done = execute.run([PY, "-c", "import os,sys; sys.stderr.write('tok=' + os.environ['TOKEN'])"], env)
    assert done.returncode == 0
    assert "hunter2-secret" not in done.stderr and "[REDACTED]" in done.stderr


def test_child_gets_a_minimal_environment(monkeypatch):
    monkeypatch.setenv("UNRELATED_SECRET", "leak")
    done = execute.run([PY, "-c", "import os; print(os.environ.get('UNRELATED_SECRET'))"])
    assert done.stdout.strip() == b"None"


def test_timeout_kills_the_whole_process_group():
    code = "import subprocess,time; subprocess.Popen(['sleep','30']); time.sleep(30)"
    done = execute.run([PY, "-c", code], timeout=0.5)
    assert done.timed_out and done.returncode != 0


def test_pipeline_delivers_all_bytes_when_producer_succeeds():
    seen = []
    res = execute.run_pipeline(
        [PY, "-c", "import sys; sys.stdout.write('x' * 300000)"],
        [PY, "-c", "import sys; d=sys.stdin.read(); print(len(d))"],
        producer_env=execute.Environment(), consumer_env=execute.Environment(), tap=seen.append)
    assert res.producer.returncode == 0 and res.consumer.returncode == 0
    assert res.consumer.stdout.strip() == b"300000" and sum(map(len, seen)) == 300000


def test_pipeline_kills_consumer_before_eof_when_producer_fails(tmp_path):
    marker = tmp_path / "committed"
    consumer = f"import sys; sys.stdin.read(); open({str(marker)!r}, 'w').write('x')"
    res = execute.run_pipeline(
        [PY, "-c", "import sys; sys.stdout.write('partial'); sys.stdout.flush(); sys.exit(3)"],
        [PY, "-c", consumer], producer_env=execute.Environment(), consumer_env=execute.Environment())
    assert res.producer.returncode == 3
    assert res.consumer.returncode != 0
    assert not marker.exists(), "the consumer saw end-of-input although the producer failed"


def test_pipeline_times_out_a_silent_producer(tmp_path):
    res = execute.run_pipeline([PY, "-c", "import time; time.sleep(30)"], [PY, "-c", "import sys; sys.stdin.read()"],
                               producer_env=execute.Environment(), consumer_env=execute.Environment(), timeout=0.5)
    assert res.producer.timed_out and res.consumer.returncode != 0


def test_dump_facts_count_copy_rows_across_chunk_boundaries():
    dump = (b"SET x;\nCOPY \"public\".\"containers\" (id, no) FROM stdin;\n1\tA\n2\tB\n3\tC\n\\.\n"
            b"COPY public.events (id) FROM stdin;\n\\.\nCREATE INDEX;\n")
    facts = DumpFacts()
    for i in range(0, len(dump), 7):
        facts(dump[i:i + 7])
    assert facts.facts()["rows"] == {"public.containers": 3, "public.events": 0}
    assert facts.bytes == len(dump)


def test_pg_dump_argv_has_no_password():
    argv = dump_argv("tos", "/run/postgresql", 5432, "postgres")
    assert argv[0] == "pg_dump" and "--no-password" in argv and argv[-2:] == ["--dbname", "tos"]


def test_pipeline_consumer_dies_with_its_parent(tmp_path):
    """If backupd is killed mid-dump, the consumer must die too instead of seeing end-of-input."""
    import os
    import signal
    import subprocess
    import textwrap
    import time

    marker, pidfile = tmp_path / "committed", tmp_path / "consumer.pid"
    # Like restic, the consumer needs a moment after end-of-input to commit (upload, index, snapshot);
    # the kernel closes the dead parent's pipe a few microseconds before it delivers SIGKILL.
    consumer = (f"import os,sys,time; open({str(pidfile)!r},'w').write(str(os.getpid())); sys.stdin.read(); "
                f"time.sleep(0.5); open({str(marker)!r},'w').write('x')")
    parent = textwrap.dedent(f"""
        import sys
        from backupd.process import execute
        execute.run_pipeline([sys.executable, '-c', 'import time; print(1, flush=True); time.sleep(60)'],
                             [sys.executable, '-c', {consumer!r}],
                             producer_env=execute.Environment(), consumer_env=execute.Environment())
    """)
    proc = subprocess.Popen([PY, "-c", parent], start_new_session=False)
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    consumer_pid = int(pidfile.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        try:
            os.kill(consumer_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the consumer outlived its parent")
    assert not marker.exists()


# ---- both ends of a pipeline watched; every child dies with backupd; signals cancel --------------

NO_HANG = 5.0  # generous bound: proves "returns", not how fast


def _stalled_consumer(**kw):
    import time

    t0 = time.monotonic()
    res = execute.run_pipeline(["head", "-c", "20M", "/dev/zero"], ["sleep", "6"],
                               producer_env=execute.Environment(), consumer_env=execute.Environment(), **kw)
    return res, time.monotonic() - t0


def test_pipeline_timeout_stops_a_consumer_that_stopped_reading():
    res, took = _stalled_consumer(timeout=1)
    assert took < NO_HANG, f"a stalled consumer held the pipeline for {took:.1f} s"
    assert res.consumer.timed_out and res.consumer.returncode != 0
    assert res.stalled == "consumer"


def test_pipeline_cancel_stops_a_consumer_that_stopped_reading():
    import threading

    cancel = execute.Cancel()
    threading.Timer(0.5, cancel.set).start()
    res, took = _stalled_consumer(cancel=cancel)
    assert took < NO_HANG and res.consumer.cancelled and res.consumer.returncode != 0


def test_pipeline_names_a_silent_producer_as_the_stalled_side():
    res = execute.run_pipeline([PY, "-c", "import time; time.sleep(30)"], [PY, "-c", "import sys; sys.stdin.read()"],
                               producer_env=execute.Environment(), consumer_env=execute.Environment(), timeout=0.5)
    assert res.stalled == "producer"


def test_every_child_dies_with_its_parent(tmp_path):
    """A SIGKILLed backupd leaves no restic behind: plain runs get the parent-death signal too."""
    import os
    import signal
    import subprocess
    import textwrap
    import time

    pidfile = tmp_path / "child.pid"
    child_code = f"import os,time; open({str(pidfile)!r},'w').write(str(os.getpid())); time.sleep(60)"
    parent = textwrap.dedent(f"""
        import sys
        from backupd.process import execute
        execute.run([sys.executable, '-c', {child_code!r}])
    """)
    proc = subprocess.Popen([PY, "-c", parent])
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    child = int(pidfile.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the child outlived its SIGKILLed parent")


def test_sigterm_inside_cancel_on_signals_stops_the_child_and_is_remembered():
    import os
    import signal
    import threading

    with execute.cancel_on_signals() as cancel:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        done = execute.run(["sleep", "30"], cancel=cancel, timeout=20)
    assert done.cancelled and cancel.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_cancelled_caller_starts_nothing_and_the_job_deadline_bounds_every_child():
    import pytest

    cancel = execute.Cancel()
    cancel.set()
    with pytest.raises(execute.Interrupted):
        execute.run(["true"], cancel=cancel)
    with execute.deadline(0.5):
        done = execute.run(["sleep", "30"], timeout=600)
        assert done.timed_out and done.limit is not None and done.limit <= 0.5
    assert execute.time_left() is None
    with execute.deadline(-1), pytest.raises(execute.DeadlineExceeded):
        execute.run(["true"])


def test_cancel_wakes_a_sleeping_waiter_at_once():
    import threading
    import time

    cancel = execute.Cancel()
    threading.Timer(0.2, cancel.set).start()
    t0 = time.monotonic()
    assert cancel.wait(30) and time.monotonic() - t0 < NO_HANG


def test_pipeline_notices_a_consumer_that_died_while_the_producer_is_silent(tmp_path):
    import time

    t0 = time.monotonic()
    res = execute.run_pipeline([PY, "-c", "import sys,time; sys.stdout.write('x'); sys.stdout.flush(); time.sleep(60)"],
                               [PY, "-c", "import os,sys; sys.stdin.read(1); os._exit(9)"],
                               producer_env=execute.Environment(), consumer_env=execute.Environment())
    assert time.monotonic() - t0 < NO_HANG * 3
    assert res.broken and res.consumer.returncode == 9 and res.producer.returncode != 0


def test_cancelled_by_reaches_calls_that_take_no_cancel():
    import threading
    import time

    cancel = execute.Cancel()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    with execute.cancelled_by(cancel):
        done = execute.run(["sleep", "30"], timeout=60)  # like an engine call without a cancel parameter
    assert done.cancelled and time.monotonic() - t0 < NO_HANG
    assert execute._with_ambient(None) is None


def test_the_gentle_stop_reaches_a_child_started_with_sigint_ignored():
    """Under cron, nohup or a shell's background job SIGINT arrives ignored and survives exec: the child must
    still stop on the gentle SIGINT (restic removes its lock then), not only on the SIGTERM escalation."""
    import signal
    import threading

    cancel = execute.Cancel()
    threading.Timer(0.3, cancel.set).start()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with execute.cancelled_by(cancel):
            done = execute.run(["sleep", "30"], timeout=60)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done.cancelled and done.returncode == -signal.SIGINT
