"""Every case in cases/ at every dtype it declares, against the implementation under test.

Parametrized by the klconform plugin: test ids are `<case id>-<dtype>`, so `-k <case id>`
selects a case. Failures print the claim, expected vs actual, the budget and a snippet.
"""


def test_case(kl_case, kl_dtype, kl_check):
    kl_check(kl_case, kl_dtype)
