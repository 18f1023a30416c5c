"""Facts of the specification that code in every stage needs, each stated once here."""

# The canonical (torch-convention) reductions, in the order reports list them.
REDUCTIONS = ("none", "mean", "sum", "batchmean")
# What a call without a reduction argument means in the canonical convention
# (claim default-reduction-mean).
DEFAULT_REDUCTION = "mean"

DTYPES = ("float16", "bfloat16", "float32", "float64")
# The dtypes a case runs at when it names none.
DEFAULT_DTYPES = ("float32", "float64")

# The run stream's layout (spec/run-stream.schema.json), written by the harness and read by
# the report: 2 is the first where start and record events carry what their test checks.
STREAM_FORMAT = 2

# The two values of an option that works on the run's calls ahead of them
# (--kl-compile-ahead, --kl-calls-ahead) or keeps their programs (--kl-compile-cache):
# where it pays, or not at all.
AUTO, OFF = "auto", "off"

# Seconds one implementation call may take before it fails (--kl-timeout).
DEFAULT_TIMEOUT_S = 60.0

# A diagnosis as the engine writes it and a report reads it: "looks like: <mistake>", the
# mistake followed, where other known mistakes reproduce the value as well, by
# " (also fits: <mistake> | <mistake>)".
DIAGNOSIS_PREFIX = "looks like:"
ALSO_FITS = " (also fits: "
# What follows a property's diagnosis: its shrunk example and the replay command (last, so
# that the command can be pasted as it stands); or the first failing example, where its
# failure is a known deviation, or the installed Hypothesis draws no failing one to shrink.
SHRUNK_EXAMPLE = "shrunk example: "
UNSHRUNK_EXAMPLE = "failing example (not shrunk): "
EXAMPLE_LABELS = (SHRUNK_EXAMPLE, UNSHRUNK_EXAMPLE)
ALSO_FITS_SEPARATOR = " | "

# The circuit breaker as the engine words it and a report reads it: a call it did not make
# raised NOT_RUN_ERROR, whose message lists the calls it stopped after, each "<call> crashed"
# or "<call> hung"; and the error each of those calls raised, by that word. A call not made
# is the crash's or the hang's root cause, not one of its own.
NOT_RUN_ERROR = "CallNotRun"
CALL_CRASHED, CALL_HUNG = "crashed", "hung"
STOPPING_ERRORS = {CALL_CRASHED: "WorkerCrashed", CALL_HUNG: "CallTimeout"}
