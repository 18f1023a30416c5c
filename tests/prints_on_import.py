"""An implementation that prints when imported (tests/test_forked_calls.py)."""

import torch.nn.functional as F

print("prints_on_import: imported")


def kl_div(input, target, reduction="mean", log_target=False):
    if input.dim() == 2 and reduction == "sum":
        import os

        os._exit(3)
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)
