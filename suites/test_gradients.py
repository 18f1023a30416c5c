"""Gradients of every eligible case (finite inputs, value expected), for adapters with autograd.

Test ids are `<case id>-<dtype>`; records carry the case id prefixed with `grad:`.
"""


def test_gradient(kl_gradient_case, kl_dtype, kl_adapter, kl_device, kl_conclude):
    from klconform.engine.gradients import evaluate_gradients

    kl_conclude(evaluate_gradients(kl_gradient_case, kl_dtype, kl_adapter, kl_device))
