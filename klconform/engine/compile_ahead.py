"""Compiling an implementation's programs ahead of its calls, in a process of their own.

A library that compiles each new shape (a record with `compiles_per_shape` and `jit`: jax,
optax, keras on jax) spends most of a run compiling, one program at a time, while the run
waits on the call that needs it. Where the record's array bridge can share compiled
programs between processes, the run starts a second child beside its call worker
(klconform.engine.compile_ahead_worker): it makes the calls the run's tests will make, on
its own, from the last test back (the call worker compiles the first ones' meanwhile), and
every program it compiles is shared into a folder the call worker looks up before
compiling. The call worker then loads a program instead of compiling it, where the second
child got there first; the child stops where it meets the run.

The folder of programs is kept between runs (--kl-compile-cache; klconform.program_store):
a later run of the same implementation loads what an earlier one compiled. A call worker
adds each program it compiled as soon as the call that compiled it returned, where the
run's other call workers (pytest-xdist) find it; at the end the run adds any the worker's
clock missed, unless a process of the worker was killed (a crash, a timeout) and could have
left one half written.

Nothing the second child does reaches a result: its calls' results and errors are thrown
away, it is killed when the run ends, and a program is only ever loaded whole (written
elsewhere, then linked in once the call that wrote it returned). A call the second child
did not get to compiles in the call worker as it would without it.
"""

import atexit
import getpass
import os
import pickle
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile

from klconform import program_store
from klconform.adapters.arrays import COMPILED_AHEAD_VARIABLE, COMPILED_HERE_VARIABLE
from klconform.constants import OFF  # --kl-compile-cache's: a cache of this run's only
from klconform.engine import children

# The kept folder: PROGRAMS, shared by every run, and RUNS, one folder per running run. In
# PROGRAMS, WORKER and STAGING, one folder per library build and CPU (program_store.scope).
PROGRAMS, RUNS = "programs", "runs"
# In a run's folder: what the call worker's library writes (WORKER), what the second child's
# writes (STAGING), the plan the second child follows.
WORKER, STAGING = "worker", "staging"
PLAN = "plan.pickle"
# The index in the plan of the test the run has reached, which the second child reads.
PROGRESS = "progress"
PROGRESS_WIDTH = 12


def default_cache():
    """Where programs are kept between runs unless --kl-compile-cache says otherwise."""
    from klconform.resources import user_cache

    return user_cache("compiled")


class _CompiledAhead:
    """This process's run folder, the kept folder of programs it reads and adds to, and the
    child compiling ahead."""

    def __init__(self):
        self.cache = None       # the kept folder; None: default_cache()
        self.kept = True        # False: the cache is this run's own, removed at the end
        self.folder = None      # this run's folder
        self.process = None
        self.progress = None    # the progress file, open for writing
        self.worker_whole = False

    def keep_in(self, directory):
        """`directory`, or OFF for a cache removed with the run. Ignored once a call worker
        was given the folders (a process running several sessions keeps its first's)."""
        if self.folder is not None:
            return
        self.kept = directory != OFF
        self.cache = os.path.abspath(directory) if directory and self.kept else None

    def programs(self):
        return os.path.join(self._cache(), PROGRAMS)

    def _cache(self):
        if self.cache is None:
            self.cache = default_cache() if self.kept else os.path.join(
                _temporary_root(), _run_name())
        return self.cache

    def run_folder(self):
        """Named, not made: the call worker is started before anyone knows whether its
        record compiles ahead, and a run that does not (torch's) makes no folder at all."""
        if self.folder is None:
            self.folder = os.path.join(self._cache(), RUNS, _run_name())
        return self.folder

    def start(self, plan, environment):
        self.remove_folders_of_ended_runs()
        folder = self.run_folder()
        try:
            os.makedirs(os.path.join(folder, STAGING), mode=0o700, exist_ok=True)
            os.makedirs(self.programs(), mode=0o700, exist_ok=True)
            with open(os.path.join(folder, PLAN), "wb") as handle:
                pickle.dump(plan, handle, protocol=pickle.HIGHEST_PROTOCOL)
            self.progress = os.open(os.path.join(folder, PROGRESS), os.O_CREAT | os.O_RDWR)
        except OSError:
            return   # a cache folder that cannot be written: every call compiles its own
        self.reached(-1)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "klconform.engine.compile_ahead_worker", folder,
             str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, env=environment)

    def stop(self):
        self.stop_compiling()
        if self.folder is None:
            return
        if self.kept and self.worker_whole:
            # The worker shared each program as the call that compiled it returned
            # (program_store.Mirror); this takes any whose writing its clock did not see.
            shared, written = self.programs(), os.path.join(self.folder, WORKER)
            for scope in _folders(written):
                program_store.publish(os.path.join(written, scope),
                                      os.path.join(shared, scope))
            for scope in _folders(shared):
                program_store.remove_unused(os.path.join(shared, scope))
        shutil.rmtree(self.cache if not self.kept else self.folder, ignore_errors=True)
        # A run with no second child (pytest-xdist, --kl-compile-ahead off) cleans up too.
        self.remove_folders_of_ended_runs()
        self.folder = None
        if not self.kept:
            self.cache = None

    def remove_folders_of_ended_runs(self):
        """Those of runs killed outright, which could not remove their own."""
        _remove_folders_of_ended_runs(os.path.join(self._cache(), RUNS))
        _remove_folders_of_ended_runs(_temporary_root())

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


def _folders(folder):
    """The scopes (program_store.scope) with a folder in `folder`."""
    try:
        return [entry.name for entry in os.scandir(folder) if entry.is_dir()]
    except OSError:
        return []


def _run_name():
    # The host too: a kept folder in a home directory may be shared by several machines,
    # whose process ids say nothing of each other's runs.
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _temporary_root():
    """One folder per user for the caches of runs that keep none (a run killed outright
    leaves its own behind, removed by a later run)."""
    return os.path.join(tempfile.gettempdir(), f"klconform-compiled-{getpass.getuser()}")


def _remove_folders_of_ended_runs(folder):
    try:
        names = os.listdir(folder)
    except OSError:
        return
    host = socket.gethostname()
    for name in names:
        parts = name.rsplit("-", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not _running(pid):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


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


def keep_in(directory):
    """Keep the programs compiled for the run in `directory` (None: default_cache()), or in
    a folder removed with the run (OFF). Before the call worker starts."""
    _compiled_ahead.keep_in(directory)


def worker_environment(environment):
    """`environment` with where a call worker looks up programs (the kept folder) and where
    its library writes those it compiles (its own, moved into the kept one at the end)."""
    return {**environment, COMPILED_AHEAD_VARIABLE: _compiled_ahead.programs(),
            COMPILED_HERE_VARIABLE: os.path.join(_compiled_ahead.run_folder(), WORKER)}


def worker_ended(whole):
    """The call worker is gone. `whole`: no process of it was killed while it could be
    writing a program (no crash, no timeout, no call in flight), so that what it wrote may
    be kept."""
    _compiled_ahead.worker_whole = whole


def planned_test(kind, subject, dtype):
    """One test as the second child rehearses it: its suite's kind ("case", "gradient",
    "layout", "property"), its Case or property id, its dtype."""
    return (kind, getattr(subject, "id", subject) if kind == "property" else subject, dtype)


def start(spec, plan, environment):
    """Start compiling ahead the calls of the implementation of `spec` that `plan` makes:
    its tests (planned_test()s, in the order they run), device and examples per property
    (the default profile's, whose stored examples the properties replay; None where they
    search afresh, with nothing to rehearse)."""
    _compiled_ahead.stop_compiling()
    plan = {**plan, "implementation": spec.as_data(), "sys_path": list(sys.path)}
    # It reads and adds to the kept programs as the call worker does, from a folder of its
    # own (STAGING), which the run's end does not publish: it shares each program live.
    _compiled_ahead.start(plan, {
        **environment, COMPILED_AHEAD_VARIABLE: _compiled_ahead.programs(),
        COMPILED_HERE_VARIABLE: os.path.join(_compiled_ahead.run_folder(), STAGING)})


def reached(index):
    """The run starts the test at `index` in the plan: the second child, which rehearses
    the plan from its end, stops where it meets the run."""
    _compiled_ahead.reached(index)


def stop():
    """The end of the run: kill the second child, keep what the call worker compiled
    (where worker_ended said it may), remove the run's folder."""
    _compiled_ahead.stop()
