"""Messages to and from the call worker: large arrays travel through shared memory and come
back equal; the files are gone once read, and a killed transfer's file is removed."""

import os

import numpy as np
import pytest

from klconform.adapters.base import Call
from klconform.engine import wire

needs_shared_memory = pytest.mark.skipif(wire.SHARED_DIR is None, reason="no /dev/shm here")


def _files(run_pid):
    return [name for name in os.listdir(wire.SHARED_DIR)
            if name.startswith(f"klconform-{run_pid}-")]


@needs_shared_memory
def test_a_large_call_travels_out_of_band_and_comes_back_equal():
    run_pid = os.getpid()
    rows = np.random.default_rng(3).standard_normal((16, 5000))  # 640 KB per array
    view = rows[:, ::2]  # not contiguous: pickled in band, still equal
    call = Call(rows, rows[::-1].copy(), dtype="float32", reduction="none")
    written = []
    payload = wire.encode(("call", "torch", "run", call, view, None), run_pid, written)
    assert len(payload) < rows.nbytes  # the arrays are not in the pipe's bytes
    assert len(_files(run_pid)) == 1
    assert [(os.path.basename(path), size) for path, size in written] \
        == [(_files(run_pid)[0], 2 * rows.nbytes)]
    kind, spec, method, received, received_view, path = wire.decode(payload)
    assert _files(run_pid) == []
    assert (kind, spec, method, path) == ("call", "torch", "run", None)
    np.testing.assert_array_equal(received.input, call.input)
    np.testing.assert_array_equal(received.target, call.target)
    np.testing.assert_array_equal(received_view, view)
    assert received.input.flags.writeable and received.input.dtype == np.float64


def test_small_messages_stay_in_the_pipe():
    written = []
    payload = wire.encode(("ok", np.arange(10.0)), os.getpid(), written)
    assert wire.SHARED_DIR is None or _files(os.getpid()) == []
    assert written == []
    np.testing.assert_array_equal(wire.decode(payload)[1], np.arange(10.0))


@needs_shared_memory
def test_the_file_of_a_message_never_read_is_removed():
    run_pid = os.getpid()
    wire.encode(("ok", np.zeros(1 << 17)), run_pid)
    assert len(_files(run_pid)) == 1
    wire.remove_leftovers(run_pid)
    assert _files(run_pid) == []
