"""What every child process of a run shares: it dies with the run, and the run kills it
with whatever it started (engine.call_worker, engine.compile_ahead_worker)."""

import os
import signal
import subprocess
import sys
import threading
import time


def die_with_parent(parent_pid):
    """No child of a run may outlive it, even a busy-looping one whose parent was killed."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except Exception:  # prctl unavailable: the watchdog below still covers it
            pass
    if os.getppid() != parent_pid:
        os._exit(0)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="klconform-parent-watch", daemon=True).start()


def kill_group(process):
    """Kill `process` and its process group (it was started in a session of its own), and
    reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
