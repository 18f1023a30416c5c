"""Failures grouped by the mistake behind them, for a report a person reads top-down.

One bug fails many tests: 'batchmean' divided by numel fails every batchmean case at every
dtype and shape, and a callable returning the wrong type errors on every call. A group is
what those tests share, with the numbers taken out (the same mistake divides by 12 on one
shape and by 4 on another):

- a diagnosis ("looks like: ..."), the engine's name for a known mistake;
- otherwise an error: the exception type and message, wherever the call was made;
- otherwise the first failed check, per set of claims it failed (two value mismatches
  on different claims are different findings).

Reads the report dict only (report["failures"]); nothing here knows the engine.
"""

import re
from dataclasses import dataclass, field

# A number standing alone: not the 16 of float16 or the 2 of log2.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
# "the implementation raised TypeError on the 'sum' call: msg", "... raised TypeError: msg";
# "klconform raised ImplementationResultError: ..." when klconform refused the result.
RAISED = re.compile(r"(?:\b(?P<who>the implementation|klconform) )?\braised (?P<type>[\w.]+)"
                    r"(?: on the .*? call)?: (?P<message>.*)")
# An index or shape, whatever its rank, once its numbers are out: [#, #] and [#, #, #] alike.
NUMBER_LIST = re.compile(r"([\[(])#(?:, #)*,?([\])])")
DIAGNOSIS_PREFIX = "looks like:"
FAILING_STATUSES = ("failed", "errored")


def normalise(text):
    """`text` on one line with every number replaced by '#'."""
    return NUMBER_LIST.sub(r"\1#\2", NUMBER.sub("#", " ".join(str(text or "").split())))


@dataclass
class RootCause:
    kind: str                       # "diagnosis", "error" or "check"
    title: str                      # the first failure's wording, numbers kept
    pattern: str                    # the wording with numbers normalised: the group's key
    failures: list = field(default_factory=list)
    wordings: set = field(default_factory=set)
    claims: list = field(default_factory=list)     # the claims these tests failed

    @property
    def levels(self):
        return sorted({failure.get("level") or "?" for failure in self.failures})

    @property
    def failing(self):
        """Tests that fail the run (failed or errored), as opposed to warned."""
        return sum(failure.get("status") in FAILING_STATUSES for failure in self.failures)

    @property
    def example(self):
        return self.failures[0]


def first_check(failure):
    checks = failure.get("checks") or ()
    return " ".join(str(checks[0] if checks else failure.get("summary") or "").split())


def classify(failure):
    """(kind, title, pattern): what this failure shares with others of the same mistake."""
    diagnosis = " ".join(str(failure.get("diagnosis") or "").split())
    if diagnosis.startswith(DIAGNOSIS_PREFIX):
        return "diagnosis", diagnosis, normalise(diagnosis)
    check = first_check(failure)
    raised = RAISED.search(check)
    if raised:
        # Who raised it stays in the title: klconform refusing a result is not the
        # implementation raising.
        who = f"{raised['who']} " if raised["who"] else ""
        title = f"{who}raised {raised['type']}: {raised['message']}"
        return "error", title, normalise(title)
    claims = ", ".join(sorted(failure.get("claims") or ()))
    return "check", check, f"{normalise(check)} [{claims}]"


def failed_claims(report):
    """test id -> the claims that test failed or warned on (a test covers more claims than
    it fails: a wrong result dtype fails result-dtype only)."""
    by_node = {}
    for claim in report.get("claims") or ():
        for case in claim.get("cases") or ():
            if case.get("status") in FAILING_STATUSES + ("warned",):
                by_node.setdefault(case.get("nodeid"), []).append(claim["id"])
    return by_node


def root_causes(report):
    """Groups of report["failures"], the likeliest root cause first: groups that fail the run
    before warnings, named mistakes before raw symptoms, bigger before smaller."""
    groups, by_node = {}, failed_claims(report)
    for failure in report.get("failures") or ():
        kind, title, pattern = classify(failure)
        group = groups.get((kind, pattern))
        if group is None:
            group = groups[kind, pattern] = RootCause(kind, title, pattern)
        group.failures.append(failure)
        group.wordings.add(title)
        for claim in by_node.get(failure.get("nodeid")) or failure.get("claims") or ():
            if claim not in group.claims:
                group.claims.append(claim)
    rank = {"diagnosis": 0, "error": 1, "check": 2}
    return sorted(groups.values(), key=lambda g: (
        not g.failing, rank[g.kind], -len(g.failures), g.pattern))
