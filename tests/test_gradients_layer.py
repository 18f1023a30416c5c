"""The gradient suite catches wrong backward passes that a forward check cannot see."""

import numpy as np

from klconform.adapters import load_adapter
from klconform.engine.evaluate import make_call
from klconform.engine.gradients import analytic, evaluate_gradients
from klconform.spec.cases import load_cases
from tests.suite_runner import implementation_module, run_suite

CUSTOM_BACKWARD = """
    import torch
    import torch.nn.functional as F


    def _with_backward(transform_input, transform_target):
        class KL(torch.autograd.Function):
            @staticmethod
            def forward(ctx, input, target, reduction):
                ctx.save_for_backward(input, target)
                ctx.reduction = reduction
                return F.kl_div(input, target, reduction=reduction)

            @staticmethod
            def backward(ctx, grad):
                input, target = ctx.saved_tensors
                with torch.enable_grad():
                    x = input.detach().requires_grad_()
                    t = target.detach().requires_grad_()
                    out = F.kl_div(x, t, reduction=ctx.reduction)
                    grad_x, grad_t = torch.autograd.grad(out, [x, t], grad)
                return transform_input(grad_x), transform_target(grad_t), None

        def kl(input, target, reduction="mean"):
            return KL.apply(input, target, reduction)

        return kl


    input_sign_flipped = _with_backward(lambda g: -g, lambda g: g)
    target_gradient_dropped_log = _with_backward(lambda g: g, lambda g: g * 0.5)
"""


def test_wrong_input_gradient_sign_with_correct_forward_fails(pytester):
    module = implementation_module(pytester, "backward_kl", CUSTOM_BACKWARD)
    run = run_suite(pytester, f"{module}:input_sign_flipped",
                    suites=("test_cases.py", "test_gradients.py"))
    assert run.failing_claims() == {"gradient-input"}  # forward claims all still hold
    assert "d/dinput: expected -" in run.output


def test_wrong_target_gradient_fails_only_the_target_claim(pytester):
    module = implementation_module(pytester, "backward_kl", CUSTOM_BACKWARD)
    run = run_suite(pytester, f"{module}:target_gradient_dropped_log",
                    suites=("test_gradients.py",))
    assert run.failing_claims() == {"gradient-target"}


def test_gradients_of_torch_match_analytic_in_float64():
    adapter = load_adapter("torch")
    cases = {case.id: case for case in load_cases()}
    for case_id in ("log-target-pointwise", "batchmean-3d-divides-by-size0-only",
                    "mean-divides-by-numel"):
        outcome = evaluate_gradients(cases[case_id], "float64", adapter)
        assert outcome.status == "passed", outcome.checks
        call = make_call(cases[case_id], "float64", "cpu")
        grad_input, grad_target = adapter.run_gradients(call)
        want_input, want_target, mask = analytic(call)
        np.testing.assert_allclose(grad_input, want_input, rtol=1e-12)
        np.testing.assert_allclose(grad_target[mask], want_target[mask], rtol=1e-12)


def test_adapter_without_autograd_is_unsupported_not_failed():
    case = next(case for case in load_cases() if case.id == "batchmean-2d")
    outcome = evaluate_gradients(case, "float64", load_adapter("numpy"))
    assert outcome.status == "unsupported"
    assert "autograd" in outcome.message


def test_backward_wrong_only_on_the_input_only_path_is_caught_there():
    case = next(case for case in load_cases() if case.id == "batchmean-2d")
    outcome = evaluate_gradients(case, "float32",
                                 load_adapter("tests.mutants:input_only_backward_unscaled"))
    assert outcome.status == "failed"
    assert outcome.claims == ("gradient-input",)
    assert all(check.startswith("input only: ") for check in outcome.checks), outcome.checks


def test_backward_wrong_only_on_the_target_only_path_is_caught_in_float64_differences():
    case = next(case for case in load_cases() if case.id == "log-target-pointwise")
    outcome = evaluate_gradients(case, "float64",
                                 load_adapter("tests.mutants:target_only_backward_negated"))
    assert outcome.status == "failed"
    assert outcome.claims == ("gradient-target",)
    assert all(check.startswith("target only: ") for check in outcome.checks), outcome.checks


def test_a_mistakes_gradient_is_judged_at_its_own_magnitude():
    # Identical distributions in one row of 7: the value is 0 whatever 'mean' divides by, the
    # gradient of 'mean' divided by size(0) = 1 is 7 times the right one. Predicted as the
    # right gradient times 7, it is one unit in the last place off what the function computes,
    # more than the right gradient's own float64 budget: a budget of that magnitude blamed
    # gradient-input and gradient-target besides reduction-mean.
    case = next(case for case in load_cases() if case.id == "identical-tiny-softmax-is-zero")
    outcome = evaluate_gradients(case, "float64",
                                 load_adapter("tests.mutants:mean_divides_by_size0"))
    assert outcome.status == "failed"
    assert outcome.claims == ("reduction-mean",), outcome.checks
