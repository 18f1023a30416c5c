"""A folder of compiled programs that processes share and runs keep.

A library that compiles each new input shape (jax, and keras or optax on it) writes one file
per program into a compilation cache folder, keyed by the program, the compile options and
the library's version, and reads it back instead of compiling again. klconform gives each
process a folder of its own, filled with hard links to every program in the shared folder
(the library finds them there), and moves what that process compiled into the shared folder
by renaming it, only once it is known whole: the library writes its entries in place, so a
process killed while writing one leaves half a file, which must never become shared.

Nothing here decides a result: an entry is the library's own, looked up by the library's own
key, and a missing or unreadable one is compiled again.
"""

import hashlib
import os
import platform
import time

# An entry no run has read or written for this long is removed (a new library version, a
# function since edited): the folder stays the size of what is in use.
UNUSED_FOR_S = 30 * 24 * 3600


def scope(*parts):
    """A folder name for programs valid for `parts` (a library build) on this machine's CPU:
    a program compiled for one CPU's features can crash another, and a library reinstalled
    in place can keep its version string and its entries' keys."""
    text = repr((platform.machine(), platform.processor(), _cpu_features()) + parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cpu_features():
    """The CPU's model and feature flags as Linux reports them (elsewhere, platform's
    machine and processor stand for them)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return ""
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line.strip() for line in lines
                             if line.split(":")[0].strip() in wanted}))


def link_into(shared, own, skip=frozenset()):
    """Make `own` (and `shared`) if missing and link every entry of `shared` but those in
    `skip` into `own`; the names linked. A file system without hard links links nothing:
    then every program is compiled, as without a shared folder."""
    os.makedirs(shared, mode=0o700, exist_ok=True)
    os.makedirs(own, mode=0o700, exist_ok=True)
    linked = set()
    for name in _entries(shared):
        if name in skip:
            continue
        try:
            os.link(os.path.join(shared, name), os.path.join(own, name))
        except FileExistsError:
            pass
        except OSError:
            continue
        linked.add(name)
    return linked


class Mirror:
    """A process's own folder kept linked to the shared one while others add to it, and
    what this process compiles shared as soon as the call that compiled it has returned:
    `with mirror:` around each call.

    Around each call: the shared folder is relinked only when it changed, and the process's
    own folder listed only when it changed (a `stat` each, else). An entry that appears in
    its own folder during a call was written whole by this process, which has returned from
    writing it; one that was there before (half written by a process of the same worker that
    was killed) is never shared."""

    def __init__(self, shared, own):
        self.shared, self.own = shared, own
        self.linked = set()
        self.stamp = None
        self.own_stamp = None
        self.present = set()
        self.refresh()

    def refresh(self):
        try:
            stamp = os.stat(self.shared).st_mtime_ns
        except OSError:
            stamp = None
        if stamp is not None and stamp == self.stamp:
            return
        self.stamp = stamp
        self.linked |= link_into(self.shared, self.own, skip=self.linked)

    def __enter__(self):
        self.before_call()
        return self

    def __exit__(self, *exception):
        self.after_call()
        return False

    def before_call(self):
        self.refresh()
        own_stamp = _stamp(self.own)
        if own_stamp != self.own_stamp:
            self.present = set(_entries(self.own))
            self.own_stamp = own_stamp

    def after_call(self):
        own_stamp = _stamp(self.own)
        if own_stamp == self.own_stamp:
            return
        written = set(_entries(self.own)) - self.present
        for name in written:
            try:
                os.link(os.path.join(self.own, name), os.path.join(self.shared, name))
            except OSError:
                continue
            self.linked.add(name)
        self.present |= written
        self.own_stamp = own_stamp


def _stamp(folder):
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def publish(own, shared):
    """Move the entries of `own` not already in `shared` into `shared`, each by one rename
    (whole or not at all); the names moved."""
    moved = set()
    for name in _entries(own):
        if os.path.exists(os.path.join(shared, name)):
            continue
        try:
            os.replace(os.path.join(own, name), os.path.join(shared, name))
        except OSError:
            continue
        moved.add(name)
    return moved


def remove_unused(shared, now=None):
    """Remove the entries of `shared` neither read nor written for UNUSED_FOR_S (reads
    update the access time, at most daily on most file systems; where they never do, an
    entry in use is only compiled again)."""
    now = time.time() if now is None else now
    for name in _entries(shared):
        path = os.path.join(shared, name)
        try:
            status = os.stat(path)
            if now - max(status.st_atime, status.st_mtime) > UNUSED_FOR_S:
                os.unlink(path)
        except OSError:
            pass


def _entries(folder):
    try:
        return [entry.name for entry in os.scandir(folder) if entry.is_file()]
    except OSError:
        return []
