"""Turning an Outcome into a pytest result and a report record.

Requirement levels and the known-deviation manifest are applied here, once, for cases,
gradients and properties alike.
"""

import warnings
from dataclasses import asdict

import pytest


class ShouldLevelWarning(UserWarning):
    """A should-level claim failed: reported, and failing only under --kl-strict."""


def conclude(outcome, record, strict, manifest=None):
    from klconform.engine.failure_text import failure_text

    failing = outcome.status in ("failed", "errored")
    deviation = manifest.match(outcome.case_id, outcome.claims, outcome.dtype) \
        if manifest else None
    if deviation and failing:
        outcome.status = "xfailed"
        outcome.message = deviation.describe()
    elif deviation and outcome.status == "passed" and deviation.id == outcome.case_id:
        # Only a case entry can go stale: a claim entry covers a claim whose other cases
        # may well pass.
        outcome.status = "stale"
        outcome.message = f"passes now; remove the stale {deviation.describe()}"
    elif failing and outcome.level == "should" and not strict:
        outcome.status = "warned"
    entry = asdict(outcome)
    entry["kind"] = "case"
    record(**entry)
    if outcome.status == "unsupported":
        pytest.skip(f"unsupported: {outcome.message}")
    if outcome.status == "xfailed":
        pytest.xfail(outcome.message)
    if outcome.status == "stale":
        if strict:
            pytest.fail(f"klconform case {outcome.case_id} [{outcome.dtype}]: "
                        f"{outcome.message}", pytrace=False)
        warnings.warn(ShouldLevelWarning(outcome.message), stacklevel=2)
    elif outcome.status == "warned":
        warnings.warn(ShouldLevelWarning(failure_text(outcome)), stacklevel=2)
    elif failing:
        pytest.fail(failure_text(outcome), pytrace=False)
