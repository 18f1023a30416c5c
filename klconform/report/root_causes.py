"""Failures grouped by the mistake behind them, for a report a person reads top-down.

One bug fails many tests: 'batchmean' divided by numel fails every batchmean case at every
dtype and shape, and a callable returning the wrong type errors on every call. A group is
what those tests share, with the numbers taken out (the same mistake divides by 12 on one
shape and by 4 on another):

- a diagnosis ("looks like: ..."), the engine's name for a known mistake, its
  parenthesised detail left out;
- otherwise an error: the exception type and message, wherever the call was made;
- otherwise the first failed check, per set of claims it failed (two value mismatches
  on different claims are different findings).

Reads the report dict only (report["failures"]); nothing here knows the engine.
"""

import re
from dataclasses import dataclass, field

from klconform.constants import (
    ALSO_FITS,
    ALSO_FITS_SEPARATOR,
    DIAGNOSIS_PREFIX,
    EXAMPLE_LABELS,
    NOT_RUN_ERROR,
    STOPPING_ERRORS,
)
from klconform.statuses import FAILING, Status

# A number standing alone: not the 16 of float16 or the 2 of log2.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
# "the implementation raised TypeError on the 'sum' call: msg", "... raised TypeError: msg";
# "klconform raised ImplementationResultError: ..." when klconform refused the result.
RAISED = re.compile(r"(?:\b(?P<who>the implementation|klconform) )?\braised (?P<type>[\w.]+)"
                    r"(?: on the .*? call)?: (?P<message>.*)")
# An index or shape, whatever its rank, once its numbers are out: [#, #] and [#, #, #] alike.
NUMBER_LIST = re.compile(r"([\[(])#(?:, #)*,?([\])])")
INPUT_DTYPE = re.compile(r"(!= input dtype )\w+")
# A call the breaker stopped after, in its list: "2x3 float32 reduction='sum' crashed;".
STOPPED_AFTER = re.compile(rf" ({'|'.join(STOPPING_ERRORS)})[;)]")


def normalise(text):
    """`text` on one line with every number replaced by '#', and the input's dtype in a
    result-dtype check: float32 returned for float16 and for bfloat16 is one mistake."""
    text = INPUT_DTYPE.sub(r"\1#", " ".join(str(text or "").split()))
    return NUMBER_LIST.sub(r"\1#\2", NUMBER.sub("#", text))


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
        return sum(failure.get("status") in FAILING for failure in self.failures)

    @property
    def example(self):
        return self.failures[0]


def mistake_pattern(diagnosis):
    """A diagnosis's group key: the mistake's name without its parenthesised detail or the
    other mistakes it lists, numbers normalised."""
    return normalise(diagnosis.split(" (", 1)[0])


def first_check(failure):
    checks = failure.get("checks") or ()
    return " ".join(str(checks[0] if checks else failure.get("summary") or "").split())


def _diagnosis(failure):
    """The failure's diagnosis on one line, without a property's shrunk example after it."""
    diagnosis = " ".join(str(failure.get("diagnosis") or "").split())
    for label in EXAMPLE_LABELS:
        diagnosis = diagnosis.split(f"; {label}", 1)[0]
    return diagnosis


def classify(failure):
    """(kind, title, pattern): what this failure shares with others of the same mistake."""
    diagnosis = _diagnosis(failure)
    if diagnosis.startswith(DIAGNOSIS_PREFIX):
        # A mistake's name is what precedes its parenthesised detail: "negatives clamped to
        # 0 (the result)" at a total is "(each pointwise term ...)" at 'none', one bug.
        return "diagnosis", diagnosis, mistake_pattern(diagnosis)
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
            if case.get("status") in FAILING | {Status.WARNED}:
                by_node.setdefault(case.get("nodeid"), []).append(claim["id"])
    return by_node


def root_causes(report):
    """Groups of report["failures"], the likeliest root cause first: groups that fail the run
    before warnings, named mistakes before raw symptoms, bigger before smaller.

    The engine blames each wrong value on the one claim it breaks, and names the mistake
    where it knows it. Named mistakes are one root cause when they share a name (a clamp
    seen in the terms and in the total) or the claims they fail ('mean' divided by size(0)
    reads as 'batchmean' on a 2-D input and as 'sum' on a 1-D one); an unnamed check joins
    the one named root cause whose claims hold all of its own (a gradient the mistake also
    breaks, which no hypothesis reproduces), or else the one its own case shows at another
    dtype or in another test. Other checks group by wording, errors by what was raised; a
    call the circuit breaker did not make joins the crash or the hang it names."""
    by_node = failed_claims(report)
    failures = [(failure, *classify(failure),
                 tuple(sorted(by_node.get(failure.get("nodeid")) or failure.get("claims")
                              or ()))) for failure in report.get("failures") or ()]
    named, named_claims = _named_components(
        [(pattern, claims, also_fits(failure)) for failure, kind, _, pattern, claims in failures
         if kind == "diagnosis"])
    named_in_case = {}
    for failure, kind, _, pattern, _ in failures:
        if kind == "diagnosis":
            named_in_case.setdefault(failure.get("case"), set()).add(named[pattern])
    key_of = {id(failure): named[pattern] if kind == "diagnosis" else (kind, pattern)
              for failure, kind, _, pattern, _ in failures}
    not_run = _join_what_stopped_them(failures, key_of)
    # Until nothing moves: a check joined by its case widens the claims its group holds.
    moved = True
    while moved:
        moved = False
        for failure, kind, _, _, claims in failures:
            if kind != "check" or key_of[id(failure)] in named_claims:
                continue
            holding = [key for key, held in named_claims.items() if set(claims) <= held]
            # Else the one mistake its own case shows elsewhere (at another dtype, or in
            # the value of the inputs whose gradient this is).
            shown = sorted(named_in_case.get(failure.get("case"), ()))
            if len(holding) > 1:
                continue
            joined = holding[0] if holding else (
                shown[0] if len(shown) == 1 and failure.get("case") is not None else None)
            if joined is not None:
                key_of[id(failure)] = joined
                named_claims[joined].update(claims)
                moved = True
    groups = {}
    # Named mistakes first, so that each group's title is a mistake's name where it has one,
    # and a call not made after the crash or the hang that is its group's title.
    for failure, kind, title, pattern, claims in sorted(
            failures, key=lambda entry: (entry[1] != "diagnosis", id(entry[0]) in not_run)):
        key = key_of[id(failure)]
        group = groups.get(key)
        if group is None:
            group = groups[key] = RootCause(kind, title, pattern)
        group.failures.append(failure)
        group.wordings.add(title)
        for claim in claims:
            if claim not in group.claims:
                group.claims.append(claim)
    rank = {"diagnosis": 0, "error": 1, "check": 2}
    return sorted(groups.values(), key=lambda g: (
        not g.failing, rank[g.kind], -len(g.failures), g.pattern))


def _raised_type(title):
    raised = RAISED.search(title)
    return raised["type"].rsplit(".", 1)[-1] if raised else None


def _join_what_stopped_them(failures, key_of):
    """The ids of the failures of calls the circuit breaker did not make, each moved into
    the group of the errors of the calls it stopped after (the crashes or the hangs its
    message lists) where one group holds them all: one bug, one root cause."""
    stopping = {}    # error type -> the keys of the groups of that error
    errors = [(failure, title, _raised_type(title))
              for failure, kind, title, _, _ in failures if kind == "error"]
    for failure, _, raised in errors:
        if raised in STOPPING_ERRORS.values():
            stopping.setdefault(raised, set()).add(key_of[id(failure)])
    moved = set()
    for failure, title, raised in errors:
        if raised != NOT_RUN_ERROR:
            continue
        named = [stopping.get(STOPPING_ERRORS[word]) for word in STOPPED_AFTER.findall(title)]
        keys = set().union(*named) if named and all(named) else set()
        if len(keys) == 1:
            key_of[id(failure)] = keys.pop()
            moved.add(id(failure))
    return moved


def also_fits(failure):
    """The names of the other mistakes the engine found reproducing this failure's value."""
    diagnosis = _diagnosis(failure)
    if ALSO_FITS not in diagnosis:
        return ()
    listed = diagnosis.split(ALSO_FITS, 1)[1].removesuffix(")")
    return tuple(mistake_pattern(f"{DIAGNOSIS_PREFIX} {name}")
                 for name in listed.split(ALSO_FITS_SEPARATOR))


def _named_components(named):
    """(pattern -> its group's key, group key -> the claims its mistakes fail) of the named
    failures [(pattern, claims, also fits)]: linked by a shared name or an equal set of
    failed claims, transitively; then a group whose every failure another, bigger group's
    mistake fits as well joins that group (-KL named on raw logits, where it equals |KL|,
    in a run whose other failures all say |KL|)."""
    parent = {}

    def root(node):
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for pattern, claims, _ in named:
        parent[root(("pattern", pattern))] = root(("claims", claims))
    sizes, common = {}, {}
    for pattern, _, alternatives in named:
        group = root(("pattern", pattern))
        sizes[group] = sizes.get(group, 0) + 1
        common[group] = common.get(group, set(alternatives)) & set(alternatives)
    for group in sorted(sizes, key=sizes.get):
        hosts = {root(("pattern", alternative)) for alternative in common[group]
                 if ("pattern", alternative) in parent} - {root(group)}
        hosts = [host for host in hosts if sizes.get(host, 0) > sizes[group]]
        if hosts:
            host = max(hosts, key=lambda candidate: sizes.get(candidate, 0))
            parent[root(group)] = host
    key_of = {pattern: ("finding", root(("pattern", pattern))) for pattern, _, _ in named}
    claims_of = {}
    for pattern, claims, _ in named:
        claims_of.setdefault(key_of[pattern], set()).update(claims)
    return key_of, claims_of
