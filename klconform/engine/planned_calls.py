"""The calls a planned test makes, for an implementation that returns what the oracle
expects: what the processes that make a run's calls ahead of it (engine.compile_ahead_worker,
engine.calls_ahead) follow. A test is planned as compile_ahead.planned_test() says.
"""

from dataclasses import replace

import numpy as np

from klconform.engine.expectations import oracle_for
from klconform.engine.properties import ExampleReplaced, ExampleRun


def calls_of(kind, subject, dtype, adapter, plan, failure_paths=True):
    """(method, Call) pairs the run's test of `kind` makes (for an implementation that
    returns what the oracle expects), lazily: an example is built only when reached.
    `failure_paths`: with the calls a gradient test makes only once a gradient failed (the
    same shapes, so the same compiled programs)."""
    from klconform.engine.evaluate import make_call, planned_case_calls
    from klconform.engine.gradients import planned_gradient_calls
    from klconform.engine.layout_checks import layout_calls

    device = plan["device"]
    if kind == "property":
        yield from _property_calls(subject, dtype, adapter, plan)
    elif kind == "layout":
        yield from (("run", each) for each in layout_calls(subject, dtype, adapter, device))
    elif kind == "case":
        yield from planned_case_calls(subject, dtype, adapter, device)
    else:
        calls = planned_gradient_calls(subject, dtype, adapter, device)
        yield from calls
        if calls and failure_paths:
            # Its value (a wrong gradient's cause) and, without a reduction, the gradients
            # of 'mean', which the default's are judged by.
            call = make_call(subject, dtype, device)
            yield "run", call
            if call.reduction is None:
                yield "run_gradients", replace(call, reduction="mean")


def worked_out_ahead(adapter, plan, key=None):
    """Work out, test by test in the order they run, the oracle's part of judging what a
    passing function answers (what engine.prepared keeps: of cases, gradients and replayed
    property examples; a layout test's arrays are made for its call); a step per test, so
    that the run can stop as soon as the library has loaded. `key(method, call)`, where
    given, is asked of each case's own call: the run takes answers made ahead by their key,
    whose digests of the case's arrays engine.prepared then keeps."""
    from klconform.engine.evaluate import work_out_ahead as case_ahead
    from klconform.engine.gradients import work_out_ahead as gradients_ahead

    def property_ahead(property_id, dtype, adapter, device):
        for _ in _property_calls(property_id, dtype, adapter, plan):
            pass   # a Rehearsal asks the oracle for each call's answer

    ahead_of = {"case": case_ahead, "gradient": gradients_ahead, "property": property_ahead}
    for kind, subject, dtype in plan["tests"]:
        work_out = ahead_of.get(kind)
        if work_out is None:
            continue
        try:
            own_call = work_out(subject, dtype, adapter, plan["device"])
            if key is not None and own_call is not None:
                key("run", own_call)
        except Exception:  # the test itself meets the same error, and reports it
            pass
        yield


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
