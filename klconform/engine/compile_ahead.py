"""Compiling an implementation's programs ahead of its calls, in a process of their own.

A library that compiles each new shape (a record with `compiles_per_shape` and `jit`: jax,
optax, keras on jax) spends most of a run compiling, one program at a time, while the run
waits on the call that needs it. Where the record's array bridge can share compiled
programs between processes, the run starts a second child beside its call worker
(klconform.engine.compile_ahead_worker): it makes the calls the run's tests will make, on
its own, from the last test back (the call worker compiles the first ones' meanwhile), and
every program it compiles is moved into a folder the call worker looks up before
compiling. The call worker then loads a program instead of compiling it, where the second
child got there first; the child stops where it meets the run.

Nothing the second child does reaches a result: its calls' results and errors are thrown
away, it is killed when the run ends, and a program is only ever loaded whole (written
elsewhere, then moved in). A call the second child did not get to compiles in the call
worker as it would without it.
"""

import atexit
import getpass
import os
import pickle
import secrets
import shutil
import subprocess
import sys
import tempfile

from klconform.adapters.arrays import COMPILED_AHEAD_VARIABLE
from klconform.engine import children

# What the call worker reads; the second child writes into STAGING and moves what it wrote.
READY, STAGING = "ready", "staging"
PLAN = "plan.pickle"
# The index in the plan of the test the run has reached, which the second child reads.
PROGRESS = "progress"
PROGRESS_WIDTH = 12


class _CompiledAhead:
    """This process's folder of programs compiled ahead, and the child compiling them."""

    def __init__(self):
        self.folder = None
        self.process = None
        self.progress = None   # the progress file, open for writing

    def ready_folder(self):
        """Named, not made: the call worker is started before anyone knows whether its
        record compiles ahead, and a run that does not (torch's) makes no folder at all."""
        if self.folder is None:
            self.folder = os.path.join(_root(), f"{os.getpid()}-{secrets.token_hex(4)}")
        return os.path.join(self.folder, READY)

    def start(self, plan, environment):
        _remove_folders_of_ended_runs()
        self.ready_folder()
        for name in (READY, STAGING):
            os.makedirs(os.path.join(self.folder, name), mode=0o700, exist_ok=True)
        path = os.path.join(self.folder, PLAN)
        with open(path, "wb") as handle:
            pickle.dump(plan, handle, protocol=pickle.HIGHEST_PROTOCOL)
        self.progress = os.open(os.path.join(self.folder, PROGRESS), os.O_CREAT | os.O_RDWR)
        self.reached(-1)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "klconform.engine.compile_ahead_worker", self.folder,
             str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, env=environment)

    def stop(self):
        self.stop_compiling()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def reached(self, index):
        if self.progress is not None:
            os.pwrite(self.progress, str(index).rjust(PROGRESS_WIDTH).encode(), 0)

    def stop_compiling(self):
        if self.progress is not None:
            os.close(self.progress)
            self.progress = None
        if self.process is not None:
            children.kill_group(self.process)
            self.process = None


def _root():
    """One folder per user for every run's programs (a run killed outright leaves its own
    behind, removed by the next run that compiles ahead)."""
    return os.path.join(tempfile.gettempdir(), f"klconform-compiled-{getpass.getuser()}")


def _remove_folders_of_ended_runs():
    try:
        names = os.listdir(_root())
    except OSError:
        return
    for name in names:
        pid = name.split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(os.path.join(_root(), name), ignore_errors=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


_compiled_ahead = _CompiledAhead()
atexit.register(_compiled_ahead.stop)


def worker_environment(environment):
    """`environment` with the folder a call worker looks up programs compiled ahead in."""
    return {**environment, COMPILED_AHEAD_VARIABLE: _compiled_ahead.ready_folder()}


def planned_test(kind, subject, dtype):
    """One test as the second child rehearses it: its suite's kind ("case", "gradient",
    "layout", "property"), its Case or property id, its dtype."""
    return (kind, getattr(subject, "id", subject) if kind == "property" else subject, dtype)


def start(spec, tests, device, max_examples, environment):
    """Start compiling ahead the calls of `tests` (planned_test()s, in the order they run)
    of the implementation of `spec`. `max_examples`: the default profile's, whose stored
    examples the properties replay; None where they search afresh (nothing to rehearse)."""
    _compiled_ahead.stop_compiling()
    plan = {"implementation": spec.as_data(), "tests": list(tests), "device": device,
            "max_examples": max_examples, "sys_path": list(sys.path)}
    # Its own library writes what it compiles; it reads no other process's programs.
    _compiled_ahead.start(plan, {key: value for key, value in environment.items()
                                 if key != COMPILED_AHEAD_VARIABLE})


def reached(index):
    """The run starts the test at `index` in the plan: the second child, which rehearses
    the plan from its end, stops where it meets the run."""
    _compiled_ahead.reached(index)


def stop():
    """Kill the second child and remove the folder (the end of the run)."""
    _compiled_ahead.stop()
