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
from dataclasses import replace

import numpy as np

from klconform.engine.compile_ahead import PLAN, PROGRESS, PROGRESS_WIDTH
from klconform.engine.expectations import oracle_for
from klconform.engine.properties import ExampleReplaced, ExampleRun


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


def calls_of(kind, subject, dtype, adapter, plan):
    """(method, Call) pairs the run's test of `kind` makes (for an implementation that
    returns what the oracle expects), lazily: an example is built only when reached."""
    from klconform.engine.evaluate import make_call

    device = plan["device"]
    if kind == "property":
        yield from _property_calls(subject, dtype, adapter, plan)
        return
    case = subject
    # A layout test's calls are its case's, the same shapes in other memory layouts: the
    # same programs.
    if kind == "layout":
        return
    call = make_call(case, dtype, device)
    if kind == "gradient":
        if adapter.capabilities.autograd:
            from klconform.engine.gradients import MODES

            for _, arguments in MODES:
                yield "run_gradients", replace(call, requires_grad=arguments)
            # Its value (finite differences, a wrong gradient's cause) and, without a
            # reduction, the gradients of 'mean', which the default's are judged by.
            yield "run", call
            if call.reduction is None:
                yield "run_gradients", replace(call, reduction="mean")
        return
    calls = [call]
    if "relation" in case.expect:
        other_arrays, other_args = case.other_call()
        calls.append(make_call(case, dtype, device, other_arrays, other_args, case.mask))
    # As the run: a case with a call its implementation cannot be asked makes none.
    if not any(adapter.plan(each).unsupported for each in calls):
        yield from (("run", each) for each in calls)
        if case.expect.get("probe_gradient") and adapter.capabilities.autograd:
            yield "run_gradients", call


def _property_calls(property_id, dtype, adapter, plan):
    from klconform.engine.properties import BY_ID, replayed_examples
    from klconform.spec.claims import load_spec

    prop = BY_ID.get(property_id)
    device = plan["device"]
    if prop is None or plan["max_examples"] is None \
            or not prop.makes_calls(adapter, dtype, device, load_spec()):
        return
    drawing = prop.drawing(adapter, dtype, device)
    for example in replayed_examples(prop, drawing, dtype, plan["max_examples"]) or ():
        rehearsal = Rehearsal(adapter, example, device)
        try:
            prop.check(rehearsal, example)
        except Exception:
            pass
        yield from rehearsal.made


class Rehearsal(ExampleRun):
    """A property's check on one example with its calls collected, not made: each answers
    as the oracle would (its exact float64 value), so that the check goes on to the calls it
    makes after a right answer."""

    def __init__(self, adapter, example, device):
        super().__init__(adapter, example, device, attribute=False)
        self.made = []

    def observe(self, call, label):
        if self.adapter.plan(call).unsupported:
            raise ExampleReplaced(label)
        self.made.append(("run", call))
        expected = oracle_for(call)
        exact = replace(expected, budget=np.zeros_like(expected.budget))
        return np.asarray(expected.value, dtype=np.float64), exact


if __name__ == "__main__":
    main(sys.argv[1:])
