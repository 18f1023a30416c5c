"""The distillation losses judged by klconform under their records.

Every correct loss (losses.py, one record each) must pass every must-level claim with at
least MIN_CHECKED claims checked; every mutant (mutants.py) must fail a must-level case on
the claim that names its bug. Each test goes through what the suites do per test (evaluate
for every default-profile case, evaluate_gradients for every eligible one); one loss also
goes through a whole run of the four suites as a user's `pytest --impl` would.
"""

from functools import cache

import pytest
import torch

from klconform.adapters import load_adapter
from klconform.engine.evaluate import evaluate
from klconform.engine.gradients import GRADIENT_DTYPES, eligible, evaluate_gradients
from klconform.spec.cases import load_cases
from klconform.spec.claims import load_spec
from klconform.spec.deviations import Manifest, record_deviations
from tests.distillation.mutants import CORRECT, WRONG, record_path
from tests.suite_runner import run_suite

FAILING = ("failed", "errored")
JUDGED = ("passed", "failed")
# The bar: a correct distillation loss is judged on at least this many claims.
MIN_CHECKED = 11
# Mutants are killed at full precision; the four dtypes are the correct losses' business.
MUTANT_DTYPES = ("float64",)
LARGE = 1 << 16


@cache
def default_cases():
    # Vocabulary-sized cases cost most of a loss's time here; the whole run below has them.
    return [case for case in load_cases()
            if case.profile != "thorough" and case.arrays[0].size <= LARGE]


@cache
def judged(impl, record, dtypes=None):
    """claim -> set of statuses over every default-profile case and gradient."""
    # In this process: these losses neither hang nor crash, and a round trip to the call
    # worker per call would cost most of the test's time. One torch thread: the calls are
    # tiny, and the two xdist workers already fill the two cores.
    adapter = load_adapter(impl, convention=str(record))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _judge(adapter, dtypes)
    finally:
        torch.set_num_threads(threads)


def _judge(adapter, dtypes):
    manifest = Manifest(record_deviations(adapter.record))
    results = {}
    for case in default_cases():
        for dtype in case.dtypes:
            if dtypes and dtype not in dtypes:
                continue
            outcomes = [evaluate(case, dtype, adapter)]
            if eligible(case) and dtype in GRADIENT_DTYPES:
                outcomes.append(evaluate_gradients(case, dtype, adapter))
            for outcome in outcomes:
                claims = dict(outcome.claim_results) or {claim: outcome.status
                                                         for claim in outcome.claims}
                for claim, status in claims.items():
                    if status in FAILING and manifest.match(outcome.case_id, (claim,), dtype):
                        status = "xfailed"
                    results.setdefault(claim, set()).add(status)
    return results


def failing_must(results):
    levels = {claim.id: claim.level for claim in load_spec().claims.values()}
    return {claim for claim, statuses in results.items()
            if statuses & set(FAILING) and levels[claim] == "must"}


def checked(results):
    return {claim for claim, statuses in results.items() if statuses & set(JUDGED)}


def impl_of(function):
    return f"{function.__module__}:{function.__name__}"


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_loss_passes_with_its_claims_checked(name):
    results = judged(impl_of(CORRECT[name]), record_path(name))
    assert not failing_must(results), f"{name} fails {sorted(failing_must(results))}"
    assert len(checked(results)) >= MIN_CHECKED, \
        f"{name}: only {sorted(checked(results))} checked"


@pytest.mark.parametrize("name", sorted(WRONG))
def test_mutant_is_killed_on_the_claim_of_its_bug(name):
    mutant = WRONG[name]
    killed = failing_must(judged(mutant.impl, mutant.record_path, MUTANT_DTYPES))
    missed = [claim for claim in mutant.breaks if claim not in killed]
    assert not missed, f"{name} ({mutant.note}) is not killed on {missed}; it fails " \
                       f"{sorted(killed)}"


def test_a_missing_t2_is_not_read_as_a_mean_over_rows_left_undivided():
    # At T = 0.5 a missing T**2 multiplies the value by 4: on a case of four rows, what a loss
    # averaging over its rows gives when it leaves the total undivided, and the run blamed
    # token-mean-divisor as well (the case has five rows since).
    mutant = WRONG["token_kd_temperature_missing_t2"]
    assert failing_must(judged(mutant.impl, mutant.record_path, MUTANT_DTYPES)) == {
        "temperature-scaling"}


def test_every_distillation_claim_has_a_mutant():
    """The kill table of tests/test_mutation.py leaves these claims to the losses here."""
    named = {claim for mutant in WRONG.values() for claim in mutant.breaks}
    missing = [claim.id for claim in load_spec().claims.values()
               if claim.family == "distillation" and claim.level == "must"
               and claim.id not in named]
    assert not missing, f"distillation claims no mutant breaks: {missing}"


def test_distillation_claims_are_not_applicable_to_a_plain_kl():
    """torch's kl_div declares no temperature, mask, logits or token mean: every
    distillation case is n/a for it (counted as such), never a pass it could not fail."""
    adapter = load_adapter("torch")
    spec = load_spec()
    cases = [case for case in load_cases()
             if any(spec.claims[claim].family == "distillation" for claim in case.claims)]
    assert len(cases) >= 10
    for case in cases:
        outcome = evaluate(case, case.dtypes[-1], adapter)
        assert outcome.status == "unsupported", (case.id, outcome.status, outcome.message)


def test_a_distillation_loss_passes_a_whole_run(pytester):
    """The four suites, through pytest, as `pytest --impl=... --convention=...` runs them."""
    suite = run_suite(pytester, impl_of(CORRECT["token-kd-labels"]),
                      f"--kl-convention={record_path('token-kd-labels')}",
                      suites=("test_cases.py", "test_gradients.py", "test_properties.py",
                              "test_layouts.py"))
    assert suite.result.ret == 0, suite.output[-3000:]
    report = suite.report
    assert report["verdict"] == "pass"
    assert report["coverage"]["checked"] >= MIN_CHECKED
    statuses = {claim["id"]: claim["status"] for claim in report["claims"]}
    for claim in ("mask-excludes-value", "mask-excludes-divisor", "mask-excludes-gradient",
                  "token-mean-divisor", "class-axis", "gradient-input"):
        assert statuses[claim] == "pass", (claim, statuses[claim])
