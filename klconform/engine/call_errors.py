"""How a call made in the call worker can end without the implementation returning or raising
(engine.isolation), and the error of one whose own error did not travel."""


class CallTimeout(Exception):
    """The implementation did not return within the per-call timeout."""


class CallNotRun(CallTimeout):
    """The circuit breaker is open for this kind of input: the call was not made."""


class WorkerCrashed(Exception):
    """The implementation killed the process running the call (segfault, exit, ...)."""


class WorkerLoadError(Exception):
    """The call worker could not re-create the adapter from its ImplementationSpec."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause   # the worker's own error, where it raised one


# A call that ended without the implementation returning or raising: it hung, was not made,
# took its process down, or the implementation never loaded. None of them is the error a
# case expecting one (an invalid reduction) asks for.
CALL_NOT_COMPLETED = (CallTimeout, WorkerCrashed, WorkerLoadError)


def rebuilt_error(type_name, text):
    # An exception class that does not pickle still reaches the case under its own name.
    return type(type_name, (Exception,), {})(text)
