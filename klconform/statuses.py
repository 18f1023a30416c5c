"""The words a result is said in, each vocabulary stated once.

A test's record has a `Status` ("passed", "errored", ...); a claim in a report has a
`ClaimStatus` ("pass", "known-deviation", ...) read off the statuses of the records that bear
on it; a claim or case has a requirement `Level`. The members are strings, so records, the
run stream and report.json carry them as the plain words.
"""

from enum import Enum


class _Word(str, Enum):
    # The word itself wherever it is printed, on every Python klconform supports (3.10's
    # str-mixin enums print as 'Status.PASSED').
    def __str__(self):
        return self.value

    def __format__(self, spec):
        return format(self.value, spec)


class Status(_Word):
    """What one conformance test's record says, or one claim within it."""

    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"         # the call raised, crashed or hung: nothing was judged
    WARNED = "warned"           # a should-level claim failed (fails only under --kl-strict)
    UNSUPPORTED = "unsupported"  # the implementation declares it cannot take this call
    RECORDED = "recorded"       # an implementation-defined point: observed, not judged
    SKIPPED = "skipped"
    XFAILED = "xfailed"         # a known deviation excused the failure
    STALE = "stale"             # a known deviation that passes now


class ClaimStatus(_Word):
    """A claim's status in a report, from the statuses of its records."""

    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    KNOWN_DEVIATION = "known-deviation"
    UNSUPPORTED = "unsupported"
    RECORDED = "recorded"
    NOT_RUN = "not-run"


class Verdict(_Word):
    """A run's verdict in its report: what a CI job gates on."""

    PASS = "pass"
    FAIL = "fail"
    INCOMPLETE = "incomplete"


class Level(_Word):
    """A claim's requirement level, strictest first."""

    MUST = "must"
    SHOULD = "should"
    IMPLEMENTATION_DEFINED = "implementation-defined"


STATUSES = tuple(Status)
LEVELS = tuple(Level)
# The statuses that fail a run: a check that did not hold, a call that gave nothing to judge.
FAILING = frozenset({Status.FAILED, Status.ERRORED})
# The levels whose claims are judged (an implementation-defined claim is only observed).
JUDGED_LEVELS = frozenset({Level.MUST, Level.SHOULD})
# A record's (or one of its claims') status -> the claim status it contributes.
CLAIM_STATUS = {
    Status.PASSED: ClaimStatus.PASS, Status.STALE: ClaimStatus.PASS,
    Status.FAILED: ClaimStatus.FAIL, Status.ERRORED: ClaimStatus.FAIL,
    Status.WARNED: ClaimStatus.WARN, Status.XFAILED: ClaimStatus.KNOWN_DEVIATION,
    Status.UNSUPPORTED: ClaimStatus.UNSUPPORTED, Status.RECORDED: ClaimStatus.RECORDED,
    Status.SKIPPED: ClaimStatus.NOT_RUN,
}
# The claim status that wins when a claim's records disagree, strongest first.
CLAIM_PRECEDENCE = (ClaimStatus.FAIL, ClaimStatus.WARN, ClaimStatus.KNOWN_DEVIATION,
                    ClaimStatus.PASS, ClaimStatus.RECORDED, ClaimStatus.UNSUPPORTED,
                    ClaimStatus.NOT_RUN)
# A record's status for a claim that means a returned value was judged for it. ERRORED is
# not: the call raised (or klconform refused what came back), so nothing was checked.
JUDGED = frozenset({Status.PASSED, Status.FAILED, Status.WARNED, Status.XFAILED, Status.STALE})


def strictest(levels, default=Level.IMPLEMENTATION_DEFINED):
    """The strictest of `levels` (words or Levels; unknown words ignored), else `default`."""
    present = set(levels)
    return next((level for level in LEVELS if level in present), default)
