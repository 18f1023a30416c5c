"""Keeping one broken implementation call from taking the run down with it.

A call that hangs is abandoned after a timeout: it runs in a daemon thread, the case fails
with a clear message, and the run goes on (the thread cannot be killed, only left behind).
Hard crashes (segfault, os._exit) kill the process; `klconform run` survives them by
running pytest in a child process, see klconform.crashes.
"""

import threading

DEFAULT_TIMEOUT_S = 60.0


class CallTimeout(Exception):
    """The implementation did not return within the per-call timeout."""


def call_with_timeout(function, *args, timeout=DEFAULT_TIMEOUT_S):
    if not timeout or timeout <= 0:
        return function(*args)
    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # re-raised in the caller's thread below
            outcome["error"] = error

    worker = threading.Thread(target=target, name="klconform-call", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise CallTimeout(f"no result after {timeout:g} s (per-call timeout; --kl-timeout)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
