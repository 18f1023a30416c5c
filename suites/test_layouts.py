"""Every eligible value case again with non-contiguous arguments (claim layout-independent).

Test ids are `<case id>-<dtype>`; records carry the case id prefixed with `layout:`. Each test
calls the implementation once per layout the adapter can pass (transposed, stepped slices,
expanded stride-0 views, a storage offset, channels-last for 4-d) and compares with the
oracle on the same values.
"""


def test_layout(kl_layout_case, kl_dtype, kl_adapter, kl_device, kl_conclude):
    from klconform.engine.layout_checks import evaluate_layouts

    kl_conclude(evaluate_layouts(kl_layout_case, kl_dtype, kl_adapter, kl_device))
