"""The backupd program's quick exit (cli.run): everything written is flushed, the exit code kept, and a
run with another thread still working exits the normal way (atexit handlers run)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.integration.conftest import ROOT


def _run(body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent("""
        import atexit, sys, threading, time
        from backupd import cli
    """) + textwrap.dedent(body) + "\ncli.main = main\ncli.run()\n"
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)


def test_a_large_output_is_complete_and_the_exit_code_kept():
    done = _run("""
        def main():
            sys.stdout.write("x" * 3_000_000)  # far more than a pipe buffer, still buffered at exit
            sys.stderr.write("note\\n")
            atexit.register(lambda: print("atexit ran"))
            raise SystemExit(3)
    """)
    assert done.returncode == 3 and done.stdout == b"x" * 3_000_000 and done.stderr == b"note\n"


def test_another_thread_still_working_gets_the_normal_exit():
    done = _run("""
        def main():
            threading.Thread(target=time.sleep, args=(0.3,)).start()
            atexit.register(lambda: print("atexit ran", flush=True))
            raise SystemExit(0)
    """)
    assert done.returncode == 0 and done.stdout == b"atexit ran\n"
