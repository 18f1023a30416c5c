"""Implementations that hang, crash or raise, for tests/test_hangs.py (torch's calling
convention)."""

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


def spins_in_half_precision(input, target, reduction="mean", log_target=False):
    if input.element_size() == 2:   # at every rank
        while True:
            pass
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


def exits_on_2d_sum(input, target, reduction="mean", log_target=False):
    if input.dim() == 2 and reduction == "sum":
        import os

        os._exit(3)  # takes its process down, as a segfaulting kernel would
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


# The same function under another name: the circuit breaker counts per --impl string, and
# the property test must not find it open from the breaker test before it.
exits_on_2d_sum_in_a_property = exits_on_2d_sum


def returns_numpy(input, target, reduction="mean", log_target=False):
    # The wrong array type on every call: klconform refuses each result alike.
    return F.kl_div(input, target, reduction=reduction, log_target=log_target).numpy()


def rejects_sum(input, target, reduction="mean", log_target=False):
    if reduction == "sum":
        raise ValueError("this loss has no 'sum'")
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


def starts_a_process_and_hangs(input, target, reduction="mean", log_target=False):
    if input.dim() == 3:
        import os
        import subprocess
        import sys
        import tempfile

        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        # Where tests/test_forked_calls.py looks for it: named after the process it started.
        with open(os.path.join(tempfile.gettempdir(),
                               f"klconform-started-by-{os.getpid()}"), "w") as file:
            file.write(str(process.pid))
        time.sleep(3600)
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)
