"""The claim layout-independent: non-contiguous arguments give the contiguous call's values.

Every eligible value case (finite inputs, a value expected) is called once per memory layout
of klconform.adapters.layouts that the adapter can pass and that makes a real view of the
case's shape; the result is compared with the oracle on the same values, as the case itself
is. A result outside the budget fails the claim when the contiguous call of the same values
is within it, or differs from that call by more than the budget: a mistake the contiguous
call makes as well is the other claims' to report, not a layout dependence.
"""

from dataclasses import replace

import numpy as np

from klconform.adapters import layouts
from klconform.engine.diagnosis import DIAGNOSIS_PREFIX
from klconform.engine.evaluate import (
    lower_precision_expected,
    make_call,
    plan_refusal,
)
from klconform.engine.expectations import compare_with_oracle, oracle_for
from klconform.engine.judging import distillation_case_not_applicable
from klconform.engine.outcome import CheckFailures, Outcome, errored_outcome, unsupported
from klconform.short_text import summarize
from klconform.spec.claims import load_spec
from klconform.statuses import Level, Status

CLAIM = "layout-independent"
# A layout test's record names its case "layout:<case id>".
CASE_PREFIX = "layout:"


def applicable(adapter, shape):
    return [layout for layout in layouts.LAYOUTS
            if layout in adapter.capabilities.layouts and layouts.applies(layout, shape)]


def layout_call(call, layout):
    return replace(call, input=layouts.logical(call.input, layout),
                   target=layouts.logical(call.target, layout), layout=layout)


LAYOUT_MISTAKE = ("the result depends on the arguments' memory layout, not only on their "
                  "values")


def _layouts_of(case, dtype, adapter, device):
    """(the case's contiguous call, why it has no layout test or None, the layouts chosen)."""
    call = make_call(case, dtype, device)
    reason = plan_refusal(adapter, call)
    if reason is None:
        reason = distillation_case_not_applicable(case, adapter.plan(call),
                                                  adapter.capabilities, load_spec())
    chosen = applicable(adapter, call.input.shape) if reason is None else []
    if reason is None and not adapter.capabilities.layouts:
        reason = "non-contiguous layouts (capabilities.layouts is empty)"
    if reason is None and not chosen:
        reason = f"any layout that makes a view of shape {call.input.shape}"
    return call, reason, chosen


def layout_calls(case, dtype, adapter, device="cpu"):
    """The calls the case's layout test makes of a function that passes it."""
    call, reason, chosen = _layouts_of(case, dtype, adapter, device)
    return [] if reason else [layout_call(call, layout) for layout in chosen]


def evaluate_layouts(case, dtype, adapter, device="cpu") -> Outcome:
    outcome = Outcome(Status.PASSED, f"{CASE_PREFIX}{case.id}", dtype, (CLAIM,), Level.MUST)
    call, reason, chosen = _layouts_of(case, dtype, adapter, device)
    if reason:
        return unsupported(outcome, f"{adapter.name} does not support {reason}", outcome.claims)
    from klconform.engine import snippets as reproduce

    failures = CheckFailures()
    checked = []
    for layout in chosen:
        strided = layout_call(call, layout)
        try:
            observation = adapter.run(strided)
        except Exception as error:
            outcome.snippet = reproduce.snippet(adapter, strided, case.id)
            errored_outcome(outcome, error)
            outcome.checks = [f"{layout}: {line}" for line in outcome.checks]
            return outcome
        expected = oracle_for(strided)
        if not _layout_dependent(adapter, strided, observation, expected, failures, layout):
            checked.append(layout)
            continue
        outcome.snippet = reproduce.snippet(adapter, strided, case.id)
        outcome.expected = summarize(expected.value)
        outcome.actual = summarize(observation.value)
        outcome.budget = float(np.max(expected.budget)) if expected.budget.size else 0.0
    if failures:
        outcome.status = Status.FAILED
        outcome.checks = failures.lines
        # One headline for every layout and shape it shows in.
        outcome.diagnosis = f"{DIAGNOSIS_PREFIX} {LAYOUT_MISTAKE}"
    else:
        outcome.message = f"layouts: {', '.join(checked)}"
    return outcome


def _layout_dependent(adapter, strided, observation, expected, failures, layout):
    """Add the failure and return True when the result depends on the layout."""
    if observation.dtype != strided.dtype or observation.shape != expected.value.shape:
        # A dtype or shape the contiguous call gives too is the value cases' failure
        # (result-dtype, the reduction's), not the layout's.
        contiguous = adapter.run(replace(strided, layout=None))
        if (contiguous.dtype, contiguous.shape) != (observation.dtype, observation.shape):
            failures.add(f"{layout}: result {observation.dtype} of shape {observation.shape}, "
                         f"the contiguous call of the same values gives {contiguous.dtype} "
                         f"of shape {contiguous.shape}")
            return True
        if observation.shape != expected.value.shape:
            if np.array_equal(observation.value, contiguous.value, equal_nan=True):
                return False
            failures.add(f"{layout}: {summarize(observation.value)}, the contiguous call "
                         f"of the same values gives {summarize(contiguous.value)}")
            return True
    against_oracle = CheckFailures()
    compare_with_oracle(observation.value, expected, against_oracle, layout)
    if not against_oracle:
        return False
    contiguous = adapter.run(replace(strided, layout=None))
    against_contiguous = CheckFailures()
    if contiguous.shape == observation.shape:
        compare_with_oracle(contiguous.value, expected, against_contiguous, "contiguous")
        if against_contiguous:
            # Both wrong: wrong in the same way is not the layout's doing. A function that
            # computes at a lower precision rounds differently per layout, within that
            # precision's budget (the precision claim's failure, judged by the cases).
            allowed = expected
            lower = lower_precision_expected(strided, adapter.plan(strided))
            if lower is not None:
                coarse = CheckFailures()
                compare_with_oracle(contiguous.value, lower, coarse, "contiguous")
                allowed = expected if coarse else lower
            # The budget is the right value's; a wrong value of larger magnitude (exp(t)
            # for t, say) rounds in proportion, whichever order a layout sums it in.
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                magnitude = np.abs(np.asarray(contiguous.value, dtype=np.float64)) / (
                    np.abs(np.asarray(expected.value, dtype=np.float64)) + allowed.budget)
            growth = np.where(np.isfinite(magnitude), np.maximum(magnitude, 1.0), 1.0)
            same = CheckFailures()
            compare_with_oracle(observation.value,
                                replace(allowed, value=contiguous.value,
                                        budget=allowed.budget * growth), same, layout)
            if not same:
                return False
    failures.add(f"{against_oracle.lines[0]} (the contiguous call of the same values "
                 f"gives {summarize(contiguous.value)})")
    return True
