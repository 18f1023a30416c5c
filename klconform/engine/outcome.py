"""What one check of one implementation produced, before pytest or a report sees it."""

from dataclasses import dataclass, field

from klconform.short_text import first_line


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


class CheckFailures:
    def __init__(self):
        self.lines = []

    def add(self, line):
        self.lines.append(line)

    def __bool__(self):
        return bool(self.lines)


def errored_outcome(outcome, error):
    outcome.status = "errored"
    outcome.actual = f"{type(error).__name__}: {first_line(error)}"
    outcome.checks = [f"the implementation raised {outcome.actual}"]
    return outcome


def describe_observed(observed):
    if "raises" in observed:
        return f"raises {observed['raises']}"
    text = f"returns {observed['value']} ({observed['dtype']}, shape {tuple(observed['shape'])})"
    if observed.get("warnings"):
        text += f", warns {observed['warnings'][0]}"
    else:
        text += ", no warning"
    if observed.get("gradient"):
        text += f"; gradient: {observed['gradient']}"
    return text
