"""Implementations that hang, for tests/test_hangs.py (torch's calling convention)."""

import time

import torch.nn.functional as F


def sleeps(input, target, reduction="mean", log_target=False):
    if input.dim() == 3:
        time.sleep(3600)
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


def spins(input, target, reduction="mean", log_target=False):
    if input.dim() == 3:
        while True:  # burns a core and never returns
            pass
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


def spins_in_float16(input, target, reduction="mean", log_target=False):
    if input.dim() == 2 and input.element_size() == 2:
        while True:
            pass
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)
