"""An implementation wrong on some shapes only, for tests/test_reproducible.py.

Which property tests fail then depends on exactly which examples were drawn, so two runs
fail the same tests only if they draw the same examples.
"""

import torch.nn.functional as F


def wrong_on_some_sizes(input, target, reduction="mean", log_target=False):
    result = F.kl_div(input, target, reduction=reduction, log_target=log_target)
    if input.numel() % 13 == 5:
        return result * 1.01 + 1e-3
    return result
