"""The property layer: claims checked on examples Hypothesis draws, against --impl.

A property is a plain function over a ExampleRun (the adapter plus one drawn Example): it makes
calls, compares every result with the float64 oracle exactly as a YAML case is compared
(klconform.engine.evaluate's helpers), then checks its own relation. run_property() searches for a
falsifying example with Hypothesis and turns the outcome into the same Outcome a case
gives, so it reaches the report, the failure text and pytest the same way.

Relations between two calls on different rounded inputs (log_target, asymmetry) allow the
budgets of both calls plus what the exact mathematics gives on those rounded inputs: the
claim holds for exact distributions, and rounding the inputs to the dtype is not the
implementation's error.
"""

import copy
import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np

from klconform.adapters.base import Call
from klconform.constants import DIAGNOSIS_PREFIX, SHRUNK_EXAMPLE, UNSHRUNK_EXAMPLE
from klconform.dtypes import round_to
from klconform.engine import drawn, stored_examples
from klconform.engine import snippets as reproduce
from klconform.engine.attribution import judge_value
from klconform.engine.call_errors import CallNotRun, CallTimeout
from klconform.engine.drawn import Options
from klconform.engine.evaluate import (
    budget_dtype,
    lower_precision_expected,
    make_call,
    own_outputs,
    plan_refusal,
    with_conversions,
)
from klconform.engine.expectations import (
    check_cross_entropy,
    check_sign,
    compare_with_oracle,
    oracle_for,
)
from klconform.engine.judging import (
    DTYPE_CLAIM,
    settle,
    unsupported_claims,
    value_claims,
)
from klconform.engine.outcome import CheckFailures, Outcome, unsupported
from klconform.oracle import float64 as oracle
from klconform.short_text import first_line, format_number, summarize
from klconform.spec.claims import load_spec
from klconform.statuses import FAILING, Status, strictest

EXAMPLE_FORMAT = 1
# A property test's record names its case "property:<property id>".
CASE_PREFIX = "property:"


class ExampleReplaced(Exception):
    """This example is a call the implementation cannot be asked, or one that says nothing
    of the property: the search draws another in its place."""


class ExampleNotRun(ExampleReplaced):
    """A call of this example was not made: the implementation hung or crashed on calls of
    its kind before (the circuit breaker). A stored example is left out, and the replay goes
    on; the search draws another."""


def raised_on_call(label, error, who="the implementation"):
    """How a property's call that raised is worded: as a case's error, which the report
    groups by what was raised (report.root_causes), a timeout and a call not made included."""
    return f"{who} raised {type(error).__name__} on the {label} call: {first_line(error)}"


class ImplementationRaised(Exception):
    """The implementation raised during a property's call: the property errors."""

    def __init__(self, label, call, error):
        super().__init__(raised_on_call(label, error))
        self.call = call


class PropertyHung(BaseException):
    """A call timed out: the search stops at once, with no further examples and no shrinking.

    A BaseException, so Hypothesis passes it through instead of shrinking (which would
    make the hanging implementation hang again on every smaller example).
    """

    def __init__(self, label, call, error):
        super().__init__(raised_on_call(label, error))
        self.call = call


class PropertyViolation(Exception):
    """Raised inside the Hypothesis search; carries the ExampleRun of the falsifying example."""

    def __init__(self, probe):
        super().__init__("; ".join(probe.failures.lines))
        self.probe = probe


class PropertyErrored(BaseException):
    """The implementation raised, or crashed its worker: the search stops at this example.

    A BaseException, as PropertyHung is: shrinking would call it again on every smaller
    example (restarting a crashed worker, which imports the library again, each time), and
    what it raised is the finding, whatever the example.
    """

    def __init__(self, probe):
        super().__init__("; ".join(probe.failures.lines))
        self.probe = probe


class ExampleRun:
    """One example under test: makes calls, compares them, collects failures and cases."""

    def __init__(self, adapter, example, device, claims=(), attribute=True):
        self.adapter = adapter
        self.claims = tuple(claims)  # the property's: what an unattributed failure breaks
        # Naming the mistake behind a wrong value costs a dozen oracle calls: the search and
        # its shrinking only need to know that a value is wrong, the shrunk example why.
        self.attribute = attribute
        self.example = example
        self.device = device
        self.failures = CheckFailures()
        self.error = None
        self.calls = []           # (label, call) in the order made, for snippets
        # (call, expectation, note) of each call, written as a YAML case description only
        # when asked for (`cases`): a failing example's, not every passing one's.
        self._cases = []
        self.first_failed = None  # (call, expected, value) of the first failing comparison
        self.refused = 0          # calls the circuit breaker did not make
        self.refusal = None       # what it said of the last one

    def call(self, input=None, target=None, reduction="same", log_target="same"):
        example = self.example
        arrays = (example.input if input is None else input,
                  example.target if target is None else target)
        arguments = {"reduction": example.reduction if reduction == "same" else reduction,
                     "log_target": example.log_target if log_target == "same" else log_target}
        # A replayed example's own arrays are rounded once, and the oracle's answers for
        # them kept (engine.prepared); other arrays are the check's, made for this call.
        own = input is None and target is None and id(example) in _REPLAYED_IDS
        return make_call(None, example.dtype, self.device, arrays, arguments,
                         kept_by=example if own else None)

    def observe(self, call, label):
        """Run `call` and compare it with the oracle; returns (value or None, Expected)."""
        self.calls.append((label, call))
        plan = self.adapter.plan(call)
        if plan.unsupported:
            # Drawn, but not a call this implementation can be asked (its probabilities
            # underflow in the dtype, say): another example takes its place.
            raise ExampleReplaced(f"{label}: {plan.unsupported}")
        try:
            observation = self.adapter.run(call)
        except CallNotRun as refusal:
            # The breaker is open for this kind of input: this example is left out, or the
            # search draws another kind instead.
            self.refused += 1
            self.refusal = raised_on_call(label, refusal, who="klconform")
            raise ExampleNotRun(self.refusal) from None
        except CallTimeout as error:
            raise PropertyHung(label, call, error) from None
        except Exception as error:  # the implementation's failure is a result, not a crash
            raise ImplementationRaised(label, call, error) from error
        expected = with_conversions(oracle_for(call, dtype=budget_dtype(call, observation)),
                                    call, plan)
        before = len(self.failures.lines)
        if observation.dtype != call.dtype:
            self.failures.add(f"result dtype of the {label} call: {observation.dtype} != input "
                              f"dtype {call.dtype}", [DTYPE_CLAIM])
        value = None
        values = [claim for claim in self.claims if claim != DTYPE_CLAIM] or value_claims(
            (), call, load_spec(), bool(self.adapter.plan(call).composed))
        if observation.shape != expected.value.shape:
            self.failures.add(f"shape of the {label} call: {observation.shape} != expected "
                              f"{expected.value.shape}", values)
        else:
            value = np.asarray(observation.value, dtype=np.float64)
            if self.attribute:
                _, expected = judge_value(call, plan, value, expected, self.failures, values,
                                          f"oracle ({label} call)",
                                          lambda: lower_precision_expected(call, plan),
                                          own_outputs(self.adapter, call))
            else:
                compare_with_oracle(value, expected, self.failures, f"oracle ({label} call)",
                                    values, call.dtype)
        if len(self.failures.lines) > before:
            self.note_failure(call, expected, observation.value)
        return value, expected

    def note_failure(self, call, expected, value):
        if self.first_failed is None:
            self.first_failed = (call, expected, value)

    def check(self, call, expected, value, expect):
        """evaluate's own check for a case expectation (`sign` or `cross_entropy`)."""
        if self.first_failed is not None:
            return  # a consequence of the wrong value already blamed on its claim
        before = len(self.failures.lines)
        if "sign" in expect:
            check_sign(expect, call, value, expected, self.failures)
        if "cross_entropy" in expect:
            check_cross_entropy(expect, call, value, expected, self.failures)
        if len(self.failures.lines) > before:
            self.note_failure(call, expected, value)

    def equal(self, label, first, second, scale=1.0):
        """|a - scale b| within both budgets plus the exact difference of the oracle values.

        `first` and `second` are (value, oracle value, budget) triples of equal shapes.
        After a wrong value (already blamed on its claim) a relation says nothing more,
        except of the property's claims that follow from the claim blamed: what they state
        is then untrue as well, and they fail with it.
        """
        following = None
        if self.first_failed is not None:
            claims = load_spec().claims
            blamed = {claim for claim in self.failures.by_claim if claim}
            following = [claim for claim in self.claims
                         if blamed & set(claims[claim].follows)]
            if not following:
                return
        value_a, exact_a, budget_a = (np.asarray(part, dtype=np.float64) for part in first)
        value_b, exact_b, budget_b = (np.asarray(part, dtype=np.float64) for part in second)
        allowed = budget_a + abs(scale) * budget_b + np.abs(exact_a - scale * exact_b)
        difference = np.abs(value_a - scale * value_b)
        outside = ~(difference <= allowed)
        if np.any(outside):
            index = tuple(int(i) for i in np.argwhere(outside)[0]) if outside.ndim else ()
            where = f" at index {list(index)}" if index else ""
            self.failures.add(
                f"{label}{where}: {format_number(value_a[index])} vs "
                f"{format_number(scale * value_b[index])}; |difference| "
                f"{format_number(difference[index])} exceeds {format_number(allowed[index])} "
                f"(both budgets plus the exact difference on these inputs)", following)

    def case(self, call, expect, note):
        """Record the call and expectation, for `cases`."""
        self._cases.append((call, expect, note))

    @property
    def cases(self):
        """The recorded calls as YAML case descriptions that reproduce this example (see
        case_writer)."""
        described = []
        for call, expect, note in self._cases:
            arguments = {}
            if call.reduction is not None:
                arguments["reduction"] = call.reduction
            if call.log_target is not None:
                arguments["log_target"] = call.log_target
            described.append({"note": note, "input": call.input.tolist(),
                              "target": call.target.tolist(), "call": arguments,
                              "expect": {"oracle": True, **_as_data(expect)}})
        return described


def _as_data(value):
    """`value` with every array in it as nested lists, as YAML writes them."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _as_data(item) for key, item in value.items()}
    return value


def measured(value, expected):
    """(value, oracle value, budget) of one call, for ExampleRun.equal."""
    return value, expected.value, expected.budget


# --- the properties ---------------------------------------------------------------------


def check_sum_equals_none_sum(probe, example):
    total_call, pointwise_call = probe.call(reduction="sum"), probe.call(reduction="none")
    total, total_expected = probe.observe(total_call, "'sum'")
    pointwise, pointwise_expected = probe.observe(pointwise_call, "'none'")
    probe.case(total_call, {}, "the 'sum' call")
    probe.case(pointwise_call, {}, "the 'none' call")
    if total is None or pointwise is None:
        return
    # Summing the 'none' terms in float64 adds nothing measurable; each term may be off by
    # its own budget, so their sum by the sum of those budgets.
    probe.equal("sum == none.sum()", measured(total, total_expected),
                (math.fsum(pointwise.ravel()), math.fsum(pointwise_expected.value.ravel()),
                 math.fsum(pointwise_expected.budget.ravel())))


def _divided_sum(reduction, divisor_of):
    def check(probe, example):
        call, sum_call = probe.call(reduction=reduction), probe.call(reduction="sum")
        value, expected = probe.observe(call, f"{reduction!r}")
        total, total_expected = probe.observe(sum_call, "'sum'")
        divisor = divisor_of(example.input.shape)
        probe.case(call, {"relation": {"op": "equal", "other": {
            "call": {"reduction": "sum"}, "scale": 1.0 / divisor}}},
            f"{reduction!r} against 'sum' / {divisor}")
        if value is not None and total is not None:
            probe.equal(f"{reduction} == sum / {divisor}", measured(value, expected),
                        measured(total, total_expected), 1.0 / divisor)

    return check


def check_log_target_equivalence(probe, example):
    # The example's target is log P; the plain call gets P = exp(log P) rounded to the dtype.
    log_call = probe.call(log_target=True)
    plain_call = probe.call(target=np.exp(example.target), log_target=False)
    in_log, in_log_expected = probe.observe(log_call, "log_target=True")
    plain, plain_expected = probe.observe(plain_call, "log_target=False on exp(target)")
    probe.case(log_call, {}, "log_target=True on log P")
    probe.case(plain_call, {}, "log_target=False on P")
    if in_log is None or plain is None:
        return
    probe.equal("log_target equivalence", measured(in_log, in_log_expected),
                measured(plain, plain_expected))


def check_normalized_nonnegative(probe, example):
    # Each last-axis row is one distribution, and each one's KL must be >= -budget.
    # A row keeps the rank the adapter takes: (C,) where 1-d calls are allowed, else (1, C).
    width = example.input.shape[-1] if example.input.ndim else 1
    row_shape = (width,) if probe.adapter.capabilities.ranks[0] <= 1 else (1, width)
    inputs = example.input.reshape(-1, *row_shape)
    targets = example.target.reshape(-1, *row_shape)
    for row, (input_row, target_row) in enumerate(zip(inputs, targets, strict=True)):
        call = probe.call(input=input_row, target=target_row, reduction="sum")
        value, expected = probe.observe(call, f"'sum' of row {row}")
        if value is None:
            continue
        before = len(probe.failures.lines)
        probe.check(call, expected, value, {"sign": "nonnegative"})
        if len(probe.failures.lines) > before:
            probe.case(call, {"sign": "nonnegative"}, f"row {row} of the example")
            return


def check_identical_zero(probe, example):
    call = probe.call()
    value, expected = probe.observe(call, "KL(P||P)")
    probe.case(call, {"sign": "zero"}, "identical P and Q")
    if value is not None:
        probe.check(call, expected, value, {"sign": "zero"})


def swapped(example):
    """(input, target) of KL(Q||P) for an example holding log Q and P (both positive)."""
    return np.log(example.target), np.exp(example.input)


def clearly_asymmetric(example):
    """Exact KL(P||Q) and KL(Q||P) differ by more than twice both budgets together.

    Then an implementation within budget on both calls must give two different values,
    and one that returns the same value for both is symmetric, not KL.
    """
    reduction = example.reduction or "mean"
    first = oracle.expected(example.input, example.target, reduction=reduction,
                            dtype=example.dtype)
    swapped_input, swapped_target = (round_to(values, example.dtype)
                                     for values in swapped(example))
    second = oracle.expected(swapped_input, swapped_target, reduction=reduction,
                             dtype=example.dtype)
    margin = 2.0 * (float(first.budget) + float(second.budget))
    return abs(float(first.value) - float(second.value)) > margin


def check_asymmetric(probe, example):
    swapped_input, swapped_target = swapped(example)
    call = probe.call()
    other = probe.call(input=swapped_input, target=swapped_target)
    forward, forward_expected = probe.observe(call, "KL(P||Q)")
    backward, backward_expected = probe.observe(other, "KL(Q||P)")
    probe.case(call, {"relation": {"op": "differ", "other": {"inputs": {
        "input": other.input.tolist(), "target": other.target.tolist()}}}},
        "KL(P||Q) against KL(Q||P)")
    if forward is None or backward is None:
        return
    allowed = float(forward_expected.budget) + float(backward_expected.budget)
    exact_gap = abs(float(forward_expected.value) - float(backward_expected.value))
    if not exact_gap > 2.0 * allowed:
        # The budgets in force (a library's conversions widen them) leave no room for a
        # clear difference on this example: it says nothing about symmetry.
        raise ExampleReplaced("KL(P||Q) and KL(Q||P) too close to judge in these budgets")
    if not abs(float(forward) - float(backward)) > allowed:
        probe.failures.add(
            f"asymmetry: KL(P||Q) = {format_number(forward)} and KL(Q||P) = "
            f"{format_number(backward)} are equal within {format_number(allowed)}, but the exact "
            f"values are {format_number(forward_expected.value)} and "
            f"{format_number(backward_expected.value)}")
        probe.note_failure(call, forward_expected, forward)


def check_permutation(probe, example):
    order = example.extra["permutation"]
    shape = example.input.shape

    def permuted(values):
        return values.reshape(-1)[order].reshape(shape)

    call = probe.call(reduction="sum")
    other = probe.call(input=permuted(example.input), target=permuted(example.target),
                       reduction="sum")
    value, expected = probe.observe(call, "'sum'")
    moved, moved_expected = probe.observe(other, "'sum' of the permuted arguments")
    probe.case(call, {"relation": {"op": "equal", "other": {"inputs": {
        "input": other.input.tolist(), "target": other.target.tolist()}}}},
        "'sum' against the same permutation of both arguments")
    if value is not None and moved is not None:
        probe.equal("sum unchanged by permuting both arguments", measured(value, expected),
                    measured(moved, moved_expected))


def check_oracle_only(label):
    """Properties whose statement the shared checks (dtype, shape, oracle) already make."""

    def check(probe, example):
        call = probe.call()
        probe.observe(call, label)
        probe.case(call, {}, label)

    return check


def check_one_hot_cross_entropy(probe, example):
    call = probe.call()
    value, expected = probe.observe(call, "'batchmean'")
    expect = {"cross_entropy": {"logits": example.extra["logits"]}}
    probe.case(call, expect, "one-hot target against cross-entropy of the logits")
    if value is not None:
        probe.check(call, expected, value, expect)


# --- the catalogue ------------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    id: str
    claims: tuple
    statement: str
    check: object                       # function(probe, example)
    options: Options = Options()
    needs: tuple = ()                   # further reductions the check calls
    needs_log_target: tuple = ()        # further log_target values the check passes
    special: str = ""                   # a strategy other than strategies.examples

    def unsupported(self, adapter, dtype, device):
        """Why the adapter cannot run this property at `dtype`, or None."""
        if self.options_for(adapter) is None:
            low, high = adapter.capabilities.ranks
            return f"the ranks this property draws (takes ranks {low} to {high})"
        if self.special == "one-hot" and self.target_in_log_space(adapter, dtype, device):
            return "one-hot targets (its target is in log space, where 0 is -inf)"
        empty = drawn.sample_array(adapter)

        def reason(reduction, log_target):
            return plan_refusal(adapter, Call(empty, empty, dtype=dtype, device=device,
                                                    reduction=reduction, log_target=log_target))

        reductions, log_targets = drawn.reduction_choices(adapter, self.options, dtype,
                                                               device)
        if not reductions or not log_targets:
            # The first option's reason names the dtype or device when those are missing.
            return reason(self.options.reductions[0], self.options.log_targets[0]) or (
                f"any of the reductions {self.options.reductions} with log_target in "
                f"{self.options.log_targets}")
        needed = [(reduction, None) for reduction in self.needs] + [
            (reductions[0], log_target) for log_target in self.needs_log_target]
        return next(filter(None, (reason(*pair) for pair in needed)), None)

    def unsupported_claims(self, adapter, dtype, device, spec):
        """claim -> reason for the claims no drawn call can judge on this adapter."""
        reductions, log_targets = drawn.reduction_choices(adapter, self.options, dtype,
                                                               device)
        reasons = {}
        for reduction in (*reductions, *self.needs):
            for log_target in (*log_targets, *self.needs_log_target):
                log_q = drawn.sample_array(adapter)
                sample = Call(log_q, np.exp(log_q), dtype=dtype,
                              device=device, reduction=reduction, log_target=log_target)
                plan = adapter.plan(sample)
                if not plan.unsupported:
                    reasons.update(unsupported_claims(self.claims, plan, adapter.capabilities,
                                                      spec))
        return reasons

    def refusal(self, adapter, dtype, device, spec):
        """(why run_property calls nothing, or None where it calls the implementation: the
        property applies and some claim of it can be judged; claim -> why it cannot be
        judged)."""
        reason = self.unsupported(adapter, dtype, device)
        if reason:
            return f"{adapter.name} does not support {reason}", {}
        cannot = self.unsupported_claims(adapter, dtype, device, spec)
        if all(claim in cannot for claim in self.claims):
            return f"{adapter.name}: {'; '.join(sorted(set(cannot.values())))}", cannot
        return None, cannot

    def makes_calls(self, adapter, dtype, device, spec):
        """Whether run_property calls the implementation at all (`refusal`)."""
        return self.refusal(adapter, dtype, device, spec)[0] is None

    def options_for(self, adapter):
        """The property's options narrowed to the ranks the adapter takes; None if none fit."""
        low, high = adapter.capabilities.ranks
        options = replace(self.options, min_dims=max(self.options.min_dims, low),
                          max_dims=min(self.options.max_dims,
                                       self.options.max_dims if high is None else high))
        minimum = 2 if self.special == "one-hot" else options.min_dims
        return options if minimum <= options.max_dims else None

    def target_in_log_space(self, adapter, dtype, device):
        """Whether klconform must take log P for this library (so P = 0 cannot be asked)."""
        sample = drawn.sample_array(adapter)
        drawable, _ = drawn.reduction_choices(adapter, self.options, dtype, device)
        plan = adapter.plan(Call(sample, np.exp(sample), dtype=dtype, device=device,
                                 reduction=(drawable or (None,))[0]))
        return any(conversion.startswith("target") for conversion in plan.conversions)

    def drawing(self, adapter, dtype, device):
        """What this property draws from for `adapter` at `dtype`."""
        options = self.options_for(adapter)
        if self.target_in_log_space(adapter, dtype, device):
            # A library that takes P only in log space cannot be asked about P = 0 here:
            # the zero-target cases judge that.
            options = replace(options, positive=True)
        fixed = bool(adapter.capabilities.fixed_shapes)
        if self.special == "one-hot":
            return Drawing(self.special, options, (), (), fixed)
        reductions, log_targets = drawn.reduction_choices(adapter, self.options, dtype,
                                                               device)
        return Drawing(self.special, options, reductions, log_targets, fixed)

    def strategy(self, adapter, dtype, device):
        return self.drawing(adapter, dtype, device).strategy(dtype)


@dataclass(frozen=True)
class Drawing:
    """All that a property's strategy is made from, for one implementation at one dtype.
    Equal drawings draw equal examples, so implementations with equal ones share stored
    examples (klconform.engine.stored_examples)."""

    special: str
    options: Options
    reductions: tuple
    log_targets: tuple
    fixed_shapes: bool

    def strategy(self, dtype):
        # Imported here: replaying stored examples needs no Hypothesis (engine.drawn).
        from klconform.engine import strategies

        options, fixed = self.options, self.fixed_shapes
        if self.special == "one-hot":
            return strategies.one_hot_examples(dtype, options.max_dims, fixed)
        # A must-level property never draws an implementation-defined point: 0-d 'batchmean'
        # (impl-0d-batchmean) has no batch to divide by.
        examples = strategies.examples(dtype, self.reductions, self.log_targets, options,
                                       fixed).filter(
            lambda example: not (example.reduction == "batchmean" and np.ndim(example.input) == 0))
        if self.special == "asymmetric":
            return examples.filter(clearly_asymmetric)
        if self.special == "permutation":
            return examples.flatmap(lambda example: strategies.permutations_of(
                example.input.size).map(lambda drawn: replace(
                    example, extra={"permutation": drawn[1]}, draws=(*example.draws, drawn[0]))))
        return examples

    def example(self, dtype, draws):
        """The example this drawing's strategy makes from `draws` (an Example's)."""
        if self.special == "one-hot":
            return drawn.one_hot_from_draws(dtype, draws)
        if self.special == "permutation":
            *example_draws, seed = draws
            example = drawn.example_from_draws(dtype, self.options, example_draws)
            return replace(example, draws=(*example.draws, seed), extra={
                "permutation": drawn.permutation_from_seed(seed, example.input.size)})
        return drawn.example_from_draws(dtype, self.options, draws)

    def as_data(self):
        return {"special": self.special, "options": asdict(self.options),
                "reductions": list(self.reductions), "log_targets": list(self.log_targets),
                "fixed_shapes": self.fixed_shapes}


REDUCING = (None, "sum", "mean", "batchmean")

PROPERTIES = (
    Property("sum-equals-none-sum", ("reduction-sum", "none-pointwise"),
             "'sum' equals the sum of the 'none' terms of the same arguments.",
             check_sum_equals_none_sum, Options(reductions=("sum",)), needs=("none",)),
    Property("mean-equals-sum-over-numel", ("reduction-mean",),
             "'mean' equals 'sum' divided by the number of elements.",
             _divided_sum("mean", math.prod), Options(reductions=("mean",)), needs=("sum",)),
    Property("batchmean-equals-sum-over-size0", ("reduction-batchmean",),
             "'batchmean' equals 'sum' divided by input.size(0).",
             _divided_sum("batchmean", lambda shape: shape[0]),
             # 0-d 'batchmean' is implementation-defined (impl-0d-batchmean).
             Options(reductions=("batchmean",), min_dims=1), needs=("sum",)),
    Property("log-target-equivalence", ("log-target",),
             "log_target=True on log P equals the plain call on P = exp(log P).",
             check_log_target_equivalence, Options(log_targets=(True,)),
             needs_log_target=(False,)),
    Property("normalized-nonnegative", ("normalized-nonnegative",),
             "For normalized P and Q, each distribution's 'sum' is >= -budget.",
             check_normalized_nonnegative,
             # Up to 4 distributions per example: each one is its own call.
             Options(reductions=("sum",), max_dims=2)),
    Property("identical-is-zero", ("identical-zero",),
             "KL(P||P) is 0 within the budget (plus the one rounding that makes log P).",
             check_identical_zero, Options(reductions=REDUCING, identical=True)),
    Property("asymmetric", ("roles-asymmetric",),
             "Where exact KL(P||Q) and KL(Q||P) clearly differ, so do the results.",
             check_asymmetric,
             Options(reductions=REDUCING, log_targets=(None, False), min_dims=1, min_last=2,
                     positive=True),
             special="asymmetric"),
    # The relation tests elementwise terms; 'sum' itself is sum-equals-none-sum's to judge.
    Property("permutation-invariant-sum", ("elementwise",),
             "The same permutation of both arguments leaves 'sum' unchanged.",
             check_permutation, Options(reductions=("sum",)), special="permutation"),
    Property("none-keeps-shape", ("none-pointwise",),
             "'none' returns the pointwise terms with the input's shape (0-d and size 1 too).",
             check_oracle_only("'none'"), Options(reductions=("none",))),
    Property("result-dtype", ("result-dtype",),
             "The result has the input's dtype, whatever the reduction and log_target.",
             check_oracle_only("drawn")),
    Property("one-hot-cross-entropy", ("cross-entropy-one-hot",),
             "With a one-hot target, 'batchmean' is the batch mean of CE(logits).",
             check_one_hot_cross_entropy, Options(reductions=("batchmean",)),
             special="one-hot"),
)

BY_ID = {prop.id: prop for prop in PROPERTIES}


# --- running a property -------------------------------------------------------------------


@contextmanager
def without_local_constants():
    """Hypothesis mixes into its draws literal constants it finds in the source of every
    "local" module imported (not in site-packages, not a test file): klconform itself when
    it runs from a checkout or an editable install, and the user's own modules. The examples,
    hence the verdict, would then change with the install layout and with edits to unrelated
    code. Inside this block that pool is empty (its cache is cleared on the way in and out,
    so the user's own hypothesis tests keep theirs). Hypothesis versions without the pool
    need nothing."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if original is None or cache is None:
        yield
        return
    empty = Constants()
    providers._get_local_constants = lambda: empty
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def run_property(prop, adapter, dtype, device="cpu", seed=None, example_dir=None,
                 replay_hint="", deviations=None) -> Outcome:
    """Search for an example falsifying `prop` at `dtype`; the Outcome of the search.
    `deviations` (a spec.deviations.Manifest): the failures the implementation owns up to;
    a stored example whose failure is one of them is reported as it is, not shrunk."""
    from hypothesis import reject
    from hypothesis.errors import HypothesisException, Unsatisfiable

    spec = load_spec()
    outcome = Outcome(Status.PASSED, f"{CASE_PREFIX}{prop.id}", dtype, prop.claims,
                      strictest(spec.claims[claim].level for claim in prop.claims))
    refusal, cannot = prop.refusal(adapter, dtype, device, spec)
    if refusal:
        return unsupported(outcome, refusal, prop.claims, cannot)
    judged = [claim for claim in prop.claims if claim not in cannot]
    not_run = [0]
    checked = [0]     # examples whose calls were all made
    refusals = []     # what the breaker said, of the examples it left out or replaced

    def search(example):
        probe = ExampleRun(adapter, example, device, judged, attribute=False)
        try:
            prop.check(probe, example)
        except ImplementationRaised as error:
            probe.error = error
            probe.failures.add(str(error))
            probe.first_failed = probe.first_failed or (error.call, None, None)
        finally:
            not_run[0] += probe.refused
            if probe.refusal:
                refusals.append(probe.refusal)
        checked[0] += 1
        if probe.error:
            raise PropertyErrored(probe)
        if probe.failures:
            raise PropertyViolation(probe)

    drawing = prop.drawing(adapter, dtype, device)
    left_out = []     # stored examples not checked because the breaker refused their calls

    # What the replay found of each stored example it checked (True: replaced): the search
    # that takes over draws the same examples first, and is told the same again without
    # calls (an example is what its draws make: engine.drawn).
    replayed = {}

    def drawn_search(example):
        found = replayed.get(_drawn_as(example))
        if found is not None:
            if found:
                reject()
            checked[0] += 1
            return
        try:
            search(example)
        except ExampleReplaced:
            reject()

    try:
        stored = _stored_examples(prop, drawing, dtype, seed)
        searched, stored_failure = stored is not None, None
        try:
            for example in stored or ():
                try:
                    search(example)
                except ExampleNotRun:
                    # Searching for a replacement would draw through the kind the
                    # implementation crashed or hung on again (benchmarks/RESULTS.md): the
                    # stored examples of the other kinds are checked as in any run.
                    left_out.append(example)
                    continue
                except ExampleReplaced:
                    replayed[_drawn_as(example)] = True
                    raise
                replayed[_drawn_as(example)] = False
        except PropertyViolation as violation:
            stored_failure, searched = violation, False
            # Shrinking a failure the implementation owns up to (a known deviation: a keras
            # run's 26 properties) made most of the calls the run made itself, and took a
            # fifth of its pytest process's time, to show a smaller example of a failure the
            # report only names (benchmarks/RESULTS.md). A failure owned in part, or not at
            # all, is shrunk as before.
            if deviations is not None and deviations.deviations:
                known = _failed(outcome, prop, violation, adapter, device, judged, cannot,
                                spec, example_dir, replay_hint, owned_by=deviations)
                if known is not None:
                    return known
        except ExampleReplaced:
            searched = False  # Hypothesis draws the replacement
        if not searched:
            # Its search starts again from the first example and counts again what it could
            # not run.
            not_run[0] = checked[0] = 0
            left_out.clear()
            with without_local_constants():
                _hypothesis_test(prop.id, dtype, seed, drawing.strategy(dtype), drawn_search)()
            if stored_failure is not None:
                # The installed Hypothesis is not the version that drew the stored examples,
                # and its own examples all pass: the stored one stays the finding, unshrunk.
                return _failed(outcome, prop, stored_failure, adapter, device, judged, cannot,
                               spec, example_dir, replay_hint, shrunk=False)
    except PropertyHung as hung:
        outcome.status = Status.ERRORED
        outcome.checks = [str(hung)]
        outcome.actual = "no result (timed out)"
        outcome.snippet = reproduce.snippet(adapter, hung.call)
    except (PropertyViolation, PropertyErrored) as violation:
        return _failed(outcome, prop, violation, adapter, device, judged, cannot, spec,
                       example_dir, replay_hint)
    except Unsatisfiable:
        if not not_run[0]:
            # Every drawn example asked for a call the implementation's plan refuses.
            return unsupported(outcome, f"{adapter.name}: no drawn example is a call it can "
                                        f"be asked at {dtype}", prop.claims)
        # Else the breaker refused them (checked[0] tells): not a limit the record declares.
    except HypothesisException as error:  # flaky implementation, ...
        outcome.status = Status.ERRORED
        outcome.checks = [f"hypothesis: {type(error).__name__}: "
                          f"{first_line(error)}"]
    if not_run[0] and not checked[0] and (
            outcome.status == Status.PASSED or outcome.checks[0].startswith("hypothesis:")):
        # Nothing of the property was checked (a search gives up on rejecting every draw):
        # the breaker's reason leads, and the run must not count the property as passing.
        outcome.checks.insert(0, f"{refusals[-1]}; no example was checked: the call(s) of "
                                 f"every example were not run")
    elif not_run[0]:
        instead = (f"{len(left_out)} of the stored examples were left out" if left_out else
                   "those examples were replaced by others")
        note = (f"{not_run[0]} call(s) not run: the implementation hung or crashed earlier on "
                f"inputs of their kind, so {instead}")
        outcome.message = f"{outcome.message}; {note}" if outcome.message else note
        if outcome.status == Status.ERRORED and outcome.checks[0].startswith("hypothesis:"):
            outcome.checks.insert(0, note)
    settle(outcome, CheckFailures(), prop.claims, cannot, spec)
    if outcome.checks:
        outcome.status = Status.ERRORED
        outcome.claim_results = {claim: Status.UNSUPPORTED if claim in cannot else Status.ERRORED
                                 for claim in prop.claims}
    return outcome


def _drawn_as(example):
    """The draws that make `example`, as one key: the same for a replayed example and for
    the one the search draws again."""
    return json.dumps(example.draws, sort_keys=True)


def _hypothesis_test(property_id, dtype, seed, strategy, function):
    from hypothesis import given, settings
    from hypothesis import seed as use_seed

    # Each property and dtype gets its own stream; without a seed it is fixed (the default
    # profile's derandomized examples), with one it is replayable from that seed.
    stream = f"{'derandomized' if seed is None else seed}:{property_id}:{dtype}"
    return use_seed(stream)(settings(report_multiple_bugs=False)(given(strategy)(function)))


def _stored_examples(prop, drawing, dtype, seed):
    """The stored examples of the default profile's search, made again from their draws, in
    order; None where that search is not the one in force or its examples are not stored."""
    from hypothesis import Phase, settings

    current = settings.default
    if seed is not None or not current.derandomize or Phase.generate not in current.phases:
        return None
    return replayed_examples(prop, drawing, dtype, current.max_examples)


def replayed_examples(prop, drawing, dtype, max_examples):
    """The default profile's examples of `prop` at `max_examples`, made again from their
    stored draws, in order (lazily); None where they are not stored. Each is made once per
    process and its arrays are read-only: the run checks the examples that it worked out the
    oracle's answers for while the library loaded (engine.planned_calls.worked_out_ahead)."""
    draws = stored_examples.stored_draws(prop.id, dtype, drawing.as_data(), max_examples)
    if draws is None:
        return None
    kept = _REPLAYED.get(id(draws))
    if kept is None or kept[0] is not draws:
        # The draws are held with their examples: no other list can take their id.
        kept = _REPLAYED[id(draws)] = (draws, [])
    return _replayed(drawing, dtype, *kept)


# id(stored draws) -> (the draws, the examples made from them so far): equal drawings make
# equal examples from the same draws (Drawing), and the draws' store entry names the drawing.
_REPLAYED = {}


def _replayed(drawing, dtype, draws, made):
    for index, each in enumerate(draws):
        if index == len(made):
            made.append(_read_only(drawing.example(dtype, each)))
        _REPLAYED_IDS.add(id(made[index]))
        yield made[index]


# Of the examples in _REPLAYED, which hold them for as long as this set names them.
_REPLAYED_IDS = set()


def forget_replayed():
    """Drop every replayed example made so far (tests that rebuild them)."""
    _REPLAYED.clear()
    _REPLAYED_IDS.clear()


def _read_only(example):
    for array in (example.input, example.target, *example.extra.values()):
        if isinstance(array, np.ndarray):
            array.flags.writeable = False
    return example


def drawn_examples(prop, drawing, dtype):
    """The examples the default profile's search draws where every example passes: the ones
    stored (tools/store_property_examples.py), in the order they are checked."""
    drawn = []

    def search(example):
        drawn.append(example)

    with without_local_constants():
        _hypothesis_test(prop.id, dtype, None, drawing.strategy(dtype), search)()
    return drawn


def _attributed(prop, probe, adapter, device, claims):
    """The shrunk example checked again, its wrong values attributed to the claims their
    mistakes break; the search's own probe where that check cannot be made again."""
    if probe.error:
        return probe
    again = ExampleRun(adapter, probe.example, device, claims)
    try:
        prop.check(again, probe.example)
    except (Exception, PropertyHung):  # it hangs or raises now: keep what the search saw
        return probe
    return again if again.failures else probe


def _failed(outcome, prop, violation, adapter, device, judged, cannot, spec, example_dir,
            replay_hint, shrunk=True, owned_by=None):
    """The outcome of the example `violation` found (shrunk: by Hypothesis's search). With
    `owned_by` (a spec.deviations.Manifest), that example's outcome, not shrunk, where every
    claim it fails is a known deviation at its dtype (the harness reports it xfailed:
    harness.conclude), else None and `outcome` untouched."""
    probe = _attributed(prop, violation.probe, adapter, device, judged)
    failures = probe.failures
    claims = list(prop.claims) + [claim for claim in failures.by_claim if claim]
    if owned_by is not None:
        settled = settle(copy.deepcopy(outcome), failures, claims, cannot, spec)
        failing = [claim for claim, status in settled.claim_results.items()
                   if status in FAILING]
        if probe.error or not owned_by.owns(outcome.case_id, failing, outcome.dtype):
            return None
        shrunk = False
    _describe_failure(outcome, prop, probe, adapter, example_dir, replay_hint, shrunk)
    settle(outcome, failures, claims, cannot, spec)
    if probe.error:
        outcome.status = Status.ERRORED
    return outcome


def _describe_failure(outcome, prop, probe, adapter, example_dir, replay_hint, shrunk=True):
    outcome.status = Status.ERRORED if probe.error else Status.FAILED
    outcome.checks = list(probe.failures.lines)
    example = f"{SHRUNK_EXAMPLE if shrunk else UNSHRUNK_EXAMPLE}{probe.example!r}" + (
        f"; replay: {replay_hint}" if replay_hint else "")
    # A named mistake leads, as a value case's does, so that the report groups this failure
    # under the same root cause (report.root_causes reads up to the example).
    outcome.diagnosis = (f"{DIAGNOSIS_PREFIX} {probe.failures.mistakes[0]}; {example}"
                         if probe.failures.mistakes else example)
    call, expected, value = probe.first_failed or (probe.calls[0][1], None, None)
    if expected is not None:
        outcome.expected = summarize(expected.value)
        outcome.budget = float(np.max(expected.budget)) if expected.budget.size else 0.0
    if value is not None:
        outcome.actual = summarize(value)
    elif probe.error:
        outcome.actual = str(probe.error)
    labels = {id(made): label for label, made in probe.calls}
    shown = [call]
    if len(probe.calls) == 2:  # a relation between two calls: show the other one too
        shown += [made for _, made in probe.calls if made is not call]
    parts = [f"# the {labels.get(id(each), 'failing')} call\n" + reproduce.snippet(adapter, each)
             for each in shown]
    example = example_record(prop, probe)
    path = write_example(example, example_dir, f"{prop.id}-{probe.example.dtype}")
    if path:
        parts.append(f"# as a YAML case: klconform case-from-example {path} -o cases/found.yaml\n")
    else:
        parts.append("# as a YAML case: save this JSON and run klconform case-from-example FILE\n"
                     f"# {json.dumps(example)}\n")
    outcome.snippet = "".join(parts)


def example_record(prop, probe):
    """The failing example as JSON data, which authoring.case_from_example turns into a case."""
    return {"klconform_example": EXAMPLE_FORMAT, "property": prop.id, "claims": list(prop.claims),
            "statement": prop.statement, "dtype": probe.example.dtype,
            "example": repr(probe.example), "failures": list(probe.failures.lines),
            "cases": probe.cases}


def write_example(example, directory, name):
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(example, handle)
    return path
