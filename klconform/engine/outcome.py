"""What one check of one implementation produced, before pytest or a report sees it."""

from dataclasses import dataclass, field

from klconform.short_text import first_line
from klconform.statuses import Status


@dataclass
class Outcome:
    status: str                 # passed | failed | errored | unsupported | recorded
    case_id: str
    dtype: str
    claims: tuple
    level: str
    message: str = ""
    checks: list = field(default_factory=list)   # one line per failed check
    expected: str | None = None
    actual: str | None = None
    budget: float | None = None
    diagnosis: str | None = None
    snippet: str | None = None
    observed: dict | None = None                  # probes: what the implementation did
    # Each claim the outcome bears on -> passed | failed | unsupported (| warned | xfailed
    # once concluded): one failing check fails only the claim it tests.
    claim_results: dict = field(default_factory=dict)
    claim_reasons: dict = field(default_factory=dict)   # claim -> why unsupported / deviation
    notes: list = field(default_factory=list)           # implementation-defined observations


class CheckFailures:
    """Failed checks, each attributed to the claims it tests (None: the outcome's own)."""

    def __init__(self):
        self.lines = []
        self.by_claim = {}
        self.notes = []
        # Known mistakes that explain failures (klconform.engine.attribution), first first.
        self.mistakes = []

    def add(self, line, claims=None):
        self.lines.append(line)
        for claim in claims or (None,):
            self.by_claim.setdefault(claim, []).append(line)

    def note(self, text):
        """Something implementation-defined seen while checking, not a failure."""
        if text not in self.notes:
            self.notes.append(text)

    def __bool__(self):
        return bool(self.lines)


def unsupported(outcome, message, claims=(), reasons=None):
    """`outcome` made the result of a call the implementation cannot be asked: each of
    `claims` unsupported, with its reason where one is known (counted as unchecked)."""
    outcome.status = Status.UNSUPPORTED
    outcome.message = message
    outcome.claim_results = {claim: Status.UNSUPPORTED for claim in claims}
    outcome.claim_reasons = dict(reasons or {})
    return outcome


def errored_outcome(outcome, error, claims=(), cannot=None):
    """`outcome` made the result of a call that raised: each of `claims` errored (nothing
    was judged for it), or unsupported where `cannot` gives the reason."""
    cannot = cannot or {}
    if claims:
        outcome.claim_results = {claim: Status.UNSUPPORTED if claim in cannot else Status.ERRORED
                                 for claim in claims}
        outcome.claim_reasons = dict(cannot)
    outcome.status = Status.ERRORED
    outcome.actual = f"{type(error).__name__}: {first_line(error)}"
    outcome.checks = [f"the implementation raised {outcome.actual}"]
    replayed = getattr(error, "replayed", None)
    if replayed:
        # The error is the one it raised on every call so far (engine.isolation's breaker).
        outcome.message = f"{outcome.message}; {replayed}" if outcome.message else replayed
    return outcome
