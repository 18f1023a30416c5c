"""An implementation whose import starts a thread (as a GPU runtime or a thread pool may):
the call worker must not fork a copy of it (tests/test_forked_calls.py)."""

import threading
import time

import torch.nn.functional as F

threading.Thread(target=time.sleep, args=(3600,), name="started-on-import", daemon=True).start()


def kl_div(input, target, reduction="mean", log_target=False):
    if input.dim() == 2 and reduction == "sum":
        import os

        os._exit(3)
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)
