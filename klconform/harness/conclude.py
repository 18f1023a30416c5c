"""Turning an Outcome into a pytest result and a report record.

Requirement levels and known deviations (the --kl-xfails manifest and the implementation
record's own `deviations:`) are applied here, once, claim by claim, for cases, gradients and
properties alike: a deviation covers the claims it names, never the case's other claims.
"""

import warnings
from dataclasses import asdict

import pytest

from klconform.statuses import FAILING, Level, Status


class ShouldLevelWarning(UserWarning):
    """A should-level claim failed: reported, and failing only under --kl-strict."""


def conclude(outcome, record, strict, manifest=None, levels=None):
    """`levels` maps claim ids to requirement levels (spec/claims.yaml)."""
    from klconform.engine.failure_text import failure_text

    levels = levels or {}
    results = dict(outcome.claim_results) or {claim: outcome.status for claim in outcome.claims}
    failing = [claim for claim, status in results.items() if status in FAILING]
    # Claims no returned value was judged for: a deviation or the should level may excuse
    # them below, but coverage must not count them as checked (report/build.py).
    errored = [claim for claim in failing
               if results[claim] == Status.ERRORED or outcome.status == Status.ERRORED]
    case_deviation = None
    for claim in failing:
        deviation = manifest.match(outcome.case_id, (claim,), outcome.dtype) if manifest else None
        if deviation:
            results[claim] = Status.XFAILED
            outcome.claim_reasons[claim] = deviation.describe()
            case_deviation = case_deviation or deviation
    if not strict:
        for claim in failing:
            if results[claim] in FAILING and levels.get(claim, outcome.level) == Level.SHOULD:
                results[claim] = Status.WARNED
    still_failing = [claim for claim in failing if results[claim] in FAILING]
    warned = [claim for claim in failing if results[claim] == Status.WARNED]
    if not still_failing and warned:
        outcome.status = Status.WARNED
    elif not still_failing and failing:
        outcome.status = Status.XFAILED
        outcome.message = case_deviation.describe()
    elif outcome.status == Status.PASSED and manifest:
        deviation = manifest.match(outcome.case_id, (), outcome.dtype)
        if deviation and deviation.id == outcome.case_id:
            # Only a case entry can go stale: a claim entry covers a claim whose other cases
            # may well pass.
            outcome.status = Status.STALE
            outcome.message = f"passes now; remove the stale {deviation.describe()}"
    outcome.claim_results = results
    entry = asdict(outcome)
    if errored:
        entry["errored_claims"] = errored
    record(**entry)
    if outcome.status == Status.UNSUPPORTED:
        pytest.skip(f"unsupported: {outcome.message}")
    if outcome.status == Status.XFAILED:
        # Without pytrace=False pytest formats the traceback of every expected failure, with
        # its source read and parsed, to show none of it (-ra shows the reason alone): 2.5 s
        # of a keras run's 128 known deviations.
        raise pytest.xfail.Exception(outcome.message, pytrace=False)
    if outcome.status == Status.STALE:
        if strict:
            pytest.fail(f"klconform case {outcome.case_id} [{outcome.dtype}]: "
                        f"{outcome.message}", pytrace=False)
        warnings.warn(ShouldLevelWarning(outcome.message), stacklevel=2)
    elif outcome.status == Status.WARNED:
        warnings.warn(ShouldLevelWarning(failure_text(outcome)), stacklevel=2)
    elif outcome.status in FAILING:
        pytest.fail(failure_text(outcome), pytrace=False)
