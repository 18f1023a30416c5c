"""The second child of klconform.engine.compile_ahead: makes a run's calls ahead of it, for
what they compile.

Run as `python -m klconform.engine.compile_ahead_worker FOLDER PARENT_PID`. It loads the
implementation as the call worker does, its library reading and adding to the kept programs
the same way (its own folder is FOLDER/staging), and makes the calls of the planned tests
from the last one back: a case's calls (its relation's second call, a probe's gradients), a
gradient case's, a property's on each of its stored examples as its check makes them. It
stops at the test the run has reached (FOLDER/progress). Every result and error is thrown
away.
"""

import os
import pickle
import sys

import numpy as np

from klconform.engine.compile_ahead import PLAN, PROGRESS, PROGRESS_WIDTH
from klconform.engine.planned_calls import calls_of


def main(argv):
    from klconform.engine.children import die_with_parent

    folder, parent_pid = argv[0], int(argv[1])
    die_with_parent(parent_pid)
    with open(os.path.join(folder, PLAN), "rb") as handle:
        plan = pickle.load(handle)
    sys.path[:] = plan["sys_path"]
    rehearse(plan, folder)


def run_reached(folder):
    """The index of the test the run has reached (-1 before the first)."""
    try:
        with open(os.path.join(folder, PROGRESS), "rb") as handle:
            return int(handle.read(PROGRESS_WIDTH) or -1)
    except (OSError, ValueError):
        return -1


def rehearse(plan, folder):
    from klconform.adapters import load_adapter

    implementation = plan["implementation"]
    # Its library reads and adds to the kept programs as the call worker's does
    # (convention.prepare_libraries, from the folders its environment names).
    adapter = load_adapter(implementation["impl"], convention=implementation["convention"])
    made = set()
    # From the end: the call worker compiles what the run's first tests need while this
    # process compiles what its last ones will, and the two meet in the middle.
    tests = plan["tests"]
    for index in range(len(tests) - 1, -1, -1):
        if index <= run_reached(folder):
            return
        kind, subject, dtype = tests[index]
        # A layout test's calls are its case's, the same shapes in other memory layouts: the
        # same programs.
        if kind == "layout":
            continue
        for method, call in calls_of(kind, subject, dtype, adapter, plan):
            key = (method, _signature(call))
            if key in made or adapter.plan(call).unsupported:
                continue
            made.add(key)
            try:
                getattr(adapter, method)(call)
            except Exception:
                pass   # the run's own call meets it, and reports it


def _signature(call):
    """What a program is compiled for: the arrays' shapes and dtypes and every argument that
    is not an array."""
    return (np.shape(call.input), np.shape(call.target), np.shape(call.mask), call.dtype,
            call.input_dtype, call.target_dtype, call.reduction, call.log_target,
            repr(call.legacy), call.temperature, call.device, call.requires_grad)


if __name__ == "__main__":
    main(sys.argv[1:])
