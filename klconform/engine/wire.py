"""How messages between a run and its call worker are encoded (klconform.engine.isolation).

Messages are pickled (protocol 5). Array buffers of LARGE bytes or more travel out of band:
the sender writes them into one file in shared memory (/dev/shm, which is RAM) and the pipe
carries only the pickle and the file's name; the receiver reads them back and removes the
file. A vocabulary-sized call (32 x 128000 float64, 64 MiB with its target) then costs two
memory copies instead of a pickle copy plus a pipe transfer in 64 KiB pieces. Smaller
buffers stay in the pickle: a file costs more than it saves there. Where there is no
/dev/shm everything goes through the pipe.

The files are named after the run's process (the call worker's parent), so that a run that
kills its worker mid-transfer can remove what the worker left (remove_leftovers).
"""

import glob
import os
import pickle
import tempfile

import numpy as np

PROTOCOL = 5
LARGE = 1 << 16
SHARED_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
    else None


def _prefix(run_pid):
    return f"klconform-{run_pid}-"


def encode(message, run_pid, written=None) -> bytes:
    """The message's bytes for the pipe; `written`, where given, gets (path, bytes) of the
    file in shared memory that holds its large buffers, where one was written."""
    large = []

    def out_of_band(buffer):
        view = buffer.raw()
        if SHARED_DIR is None or view.nbytes < LARGE:
            return True  # in the pickle
        large.append(view)
        return False

    data = pickle.dumps(message, protocol=PROTOCOL, buffer_callback=out_of_band)
    if not large:
        return pickle.dumps((data, None), protocol=PROTOCOL)
    handle, path = tempfile.mkstemp(prefix=_prefix(run_pid), dir=SHARED_DIR)
    try:
        with os.fdopen(handle, "wb") as file:
            for view in large:
                file.write(view)
    except BaseException:
        _remove(path)
        raise
    if written is not None:
        written.append((path, sum(view.nbytes for view in large)))
    return pickle.dumps((data, (path, [view.nbytes for view in large])), protocol=PROTOCOL)


def decode(payload: bytes):
    data, shared = pickle.loads(payload)
    if shared is None:
        return pickle.loads(data)
    path, sizes = shared
    buffers = []
    try:
        with open(path, "rb") as file:
            for size in sizes:
                # np.empty, not bytearray: no zero-filling of memory about to be overwritten.
                buffer = np.empty(size, dtype=np.uint8)
                if file.readinto(memoryview(buffer)) != size:
                    raise EOFError(f"{path}: shorter than its message says")
                buffers.append(buffer)
    finally:
        _remove(path)
    return pickle.loads(data, buffers=buffers)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_leftovers(run_pid):
    """Remove the files of messages that were never read (a worker killed mid-transfer)."""
    if SHARED_DIR is not None:
        for path in glob.glob(os.path.join(SHARED_DIR, _prefix(run_pid) + "*")):
            _remove(path)
