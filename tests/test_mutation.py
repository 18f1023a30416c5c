"""Mutation testing of the suite: every wrong implementation in tests/mutants.py fails exactly
the must-level claims it is recorded to break, under one root cause (each has one bug),
every correct variant passes, and every must-level claim kills something.

A mutant is killed when a must-level case fails (or errors) for it, which is what makes a real
run fail. Each mutant goes through exactly what the suites do per test: `evaluate` for every
case at every dtype it declares (suites/test_cases.py) and `evaluate_gradients` for every
eligible case (suites/test_gradients.py) and `evaluate_layouts` for the same cases
(suites/test_layouts.py), thorough-profile cases left out as in a default run.
Going through pytest for all of them costs about 4 s per mutant, over two minutes in all;
test_direct_evaluation_matches_the_real_suite runs the real suites in-process for a few
mutants and checks that their report.json fails exactly the same claims.
"""

from dataclasses import dataclass, field
from functools import cache

import pytest

from klconform.adapters import load_adapter
from klconform.engine.evaluate import evaluate
from klconform.engine.gradients import GRADIENT_DTYPES, eligible, evaluate_gradients
from klconform.engine.layout_checks import evaluate_layouts
from klconform.report.root_causes import root_causes
from klconform.spec.cases import load_cases
from klconform.spec.claims import load_spec
from tests.mutants import CORRECT, WRONG
from tests.suite_runner import run_suite

FAILING = ("failed", "errored")

# Under `pytest -n` the whole module runs on one worker (conftest.KEPT_ON_ONE_WORKER): the
# kill table reuses the runs of the per-mutant tests (run_mutant is cached per process).

# Must-level claims that no implementation can break, each with the reason; they are exempt
# from "kills at least one mutant" and printed with the kill table. Empty today: every
# must-level claim has a mutant. (mean-warns is should-level: its failure warns, never kills.)
UNBREAKABLE_CLAIMS: dict[str, str] = {}


@dataclass
class MutantRun:
    killed_on: dict = field(default_factory=dict)   # must claim -> failing "<case>-<dtype>"
    warned_on: dict = field(default_factory=dict)   # should claim -> failing "<case>-<dtype>"
    first_failure: dict = field(default_factory=dict)  # must claim -> its first check line
    # What report.json's "failures" would hold for the must-level failures, so the root
    # causes counted here are the ones a report lists.
    failures: list = field(default_factory=list)

    def add(self, outcome, label):
        if outcome.status not in FAILING:
            return
        results = outcome.claim_results or {claim: outcome.status for claim in outcome.claims}
        levels = load_spec().claims
        must = []
        for claim, status in results.items():
            if status not in FAILING:
                continue
            if levels[claim].level == "must":
                must.append(claim)
                self.killed_on.setdefault(claim, []).append(label)
                self.first_failure.setdefault(claim, f"{label}: {outcome.checks[0]}")
            elif levels[claim].level == "should":
                self.warned_on.setdefault(claim, []).append(label)
        if must:
            self.failures.append({"nodeid": label, "case": outcome.case_id,
                                  "status": outcome.status, "level": "must",
                                  "diagnosis": outcome.diagnosis, "checks": outcome.checks,
                                  "claims": must})

    @property
    def root_causes(self):
        return root_causes({"failures": self.failures})


@cache
def default_profile_cases():
    return tuple(case for case in load_cases() if case.profile != "thorough")


# name -> its MutantRun, made at most once per process.
RUNS: dict[str, MutantRun] = {}


def run_mutant(name) -> MutantRun:
    """Cached per process, so the kill table reuses what the per-mutant tests computed."""
    if name not in RUNS:
        RUNS[name] = _run_mutant(name)
    return RUNS[name]


def _run_mutant(name) -> MutantRun:
    mutant = WRONG.get(name) or CORRECT[name]
    # Called in this process, not through the call worker: the mutants are torch functions
    # already imported here, and the judging is the same either way
    # (test_direct_evaluation_matches_the_real_suite runs them through pytest and the worker).
    adapter = load_adapter(mutant.impl)
    run = MutantRun()
    for case in default_profile_cases():
        for dtype in case.dtypes:
            run.add(evaluate(case, dtype, adapter), f"{case.id}-{dtype}")
        if eligible(case):
            for dtype in case.dtypes:
                if dtype in GRADIENT_DTYPES:
                    run.add(evaluate_gradients(case, dtype, adapter), f"grad:{case.id}-{dtype}")
                run.add(evaluate_layouts(case, dtype, adapter), f"layout:{case.id}-{dtype}")
    return run


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_implementation_fails_exactly_its_claims_in_its_root_causes(name):
    mutant = WRONG[name]
    run = run_mutant(name)
    assert run.killed_on, f"{name} ({mutant.note}) survived: no must-level case failed"
    failed = set(run.killed_on)
    details = "\n".join(f"  {claim}: {run.first_failure[claim]}"
                        for claim in sorted(failed - mutant.fails))
    assert failed == mutant.fails, (
        f"{name} ({mutant.note}) fails {sorted(failed)}, not {sorted(mutant.fails)}: "
        f"missing {sorted(mutant.fails - failed)}, blamed besides:\n{details}")
    headlines = [f"  {group.title} [{', '.join(group.claims)}]" for group in run.root_causes]
    # One bug, one headline: each mutant has one bug.
    assert len(headlines) == 1, (
        f"{name}: {len(headlines)} root causes, one expected:\n" + "\n".join(headlines))


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_variant_passes(name):
    run = run_mutant(name)
    details = "\n".join(f"  {claim}: {line}" for claim, line in run.first_failure.items())
    assert not run.killed_on, f"correct variant {name} fails must-level claims:\n{details}"


def test_silent_variant_only_warns_on_mean_warns():
    # Not warning about 'mean' breaks a should-level claim: reported, never a failure.
    assert set(run_mutant("silent").warned_on) == {"mean-warns"}


def failed_claims(name):
    """The claims `name` fails: observed where this process ran it, else as recorded, which
    test_wrong_implementation_fails_exactly_its_claims_in_its_root_causes asserts to be what
    a run observes. Under `pytest -n` the kill table's process has run only its share of
    the mutants; running the rest again would cost a minute of CI for the same sets."""
    return set(RUNS[name].killed_on) if name in RUNS else set(WRONG[name].fails)


def kill_table():
    table = {}
    for name in sorted(WRONG):
        for claim in sorted(failed_claims(name)):
            table.setdefault(claim, []).append(name)
    return table


def format_mutant_table():
    """Each mutant: the claims it fails and the number of root causes its report lists."""
    lines = ["mutants: must-level claims failed (exactly) -> root causes "
             "(* = recorded; the per-mutant tests assert a run observes it)"]
    for name in sorted(WRONG):
        causes = len(RUNS[name].root_causes) if name in RUNS else "1*"
        lines.append(f"  {name:<34} {', '.join(sorted(failed_claims(name)))} -> {causes}")
    return "\n".join(lines)


def format_kill_table(table, must_claims):
    width = max(len(claim) for claim in must_claims)
    lines = ["kill table: must-level claim -> wrong implementations failing a case on it "
             "(* = the claim the mutant is tagged to break)"]
    for claim in must_claims:
        names = [f"{name}*" if claim in WRONG[name].breaks else name
                 for name in table.get(claim, [])]
        row = ", ".join(names) if names else f"NONE ({UNBREAKABLE_CLAIMS.get(claim, 'FLAG')})"
        lines.append(f"  {claim:<{width}}  {len(names):>2}  {row}")
    for claim, reason in UNBREAKABLE_CLAIMS.items():
        lines.append(f"  unbreakable by design: {claim}: {reason}")
    return "\n".join(lines)


def test_every_must_claim_kills_a_mutant(capsys):
    claims = load_spec().claims
    # The distillation claims need a loss with a temperature, a mask or logits: their
    # mutants are distillation losses (tests/distillation/test_judged.py).
    must_claims = [claim_id for claim_id, claim in claims.items()
                   if claim.level == "must" and claim.family != "distillation"]
    table = kill_table()
    with capsys.disabled():
        print("\n" + format_kill_table(table, must_claims) + "\n" + format_mutant_table())
    unknown_exemptions = [claim for claim in UNBREAKABLE_CLAIMS if claim not in must_claims]
    assert not unknown_exemptions, f"not must-level claims: {unknown_exemptions}"
    stale_exemptions = [claim for claim in UNBREAKABLE_CLAIMS if claim in table]
    assert not stale_exemptions, f"listed as unbreakable but killed: {stale_exemptions}"
    never_killed = [claim for claim in must_claims
                    if claim not in table and claim not in UNBREAKABLE_CLAIMS]
    assert not never_killed, f"must-level claims that kill no mutant: {never_killed}"


def test_every_mutant_names_known_claims():
    claims = load_spec().claims
    for mutant in WRONG.values():
        assert mutant.breaks, f"{mutant.name} names no claim"
        for claim in mutant.fails:
            assert claims[claim].level == "must", f"{mutant.name}: {claim} is not must-level"
        assert all(mutant.also.values()), f"{mutant.name}: a further claim without its why"
    assert not set(WRONG) & set(CORRECT)


# Four whole pytest runs checking that the direct evaluation above is what pytest does.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["terms_clamped", "input_gradient_doubled", "silent",
                                  "assumes_contiguous"])
def test_direct_evaluation_matches_the_real_suite(pytester, name):
    suite = run_suite(pytester, f"tests.mutants:{name}", "-q",
                      suites=("test_cases.py", "test_gradients.py", "test_layouts.py"))
    report = suite.report
    assert suite.failing_claims() == set(run_mutant(name).killed_on)
    warned = {claim["id"] for claim in report["claims"] if claim["status"] == "warn"}
    assert warned == set(run_mutant(name).warned_on)
    if name in CORRECT:
        assert suite.result.ret == pytest.ExitCode.OK
        # Two of the three suites: nothing failed, and the verdict says what did not run.
        assert report["verdict"] == "incomplete"
    else:
        assert suite.result.ret == pytest.ExitCode.TESTS_FAILED
        assert report["verdict"] == "fail"


@pytest.mark.parametrize("name", ["keras_clipped", "sign_flipped", "roles_swapped",
                                  "batchmean_divides_by_numel", "terms_clamped"])
def test_trying_a_gradient_mistake_where_the_gradients_are_wrong_first_changes_nothing(
        monkeypatch, name):
    from klconform.engine import gradient_mistakes

    adapter = load_adapter(WRONG[name].impl)
    cases = [case for case in default_profile_cases() if eligible(case)]

    def outcomes():
        return [vars(evaluate_gradients(case, dtype, adapter)) for case in cases
                for dtype in case.dtypes if dtype in GRADIENT_DTYPES]

    tried_first = outcomes()
    monkeypatch.setattr(gradient_mistakes, "_wrong_elements", lambda *args: None)
    assert tried_first == outcomes()
