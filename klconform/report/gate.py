"""The coverage gate: a run that checks too few claims fails, however well they went.

`--min-coverage N` (pytest: `--kl-min-coverage N`) asks for at least N claims checked;
`--min-coverage P%` for at least P percent of the applicable claims (the report's
"Coverage: X of Y" figure). Without it a run must still check one claim: every call
unsupported (`--device cuda` on a machine without CUDA) or every call raising would
otherwise exit 0 on the strength of nothing.

A claim counts as checked only where a returned value was judged (report/build.py); the gate
reads the report's coverage section only, so a saved stream reproduces the decision.
"""

import argparse
import re

from klconform.statuses import JUDGED_LEVELS

MIN_COVERAGE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<percent>%?)\s*")


def parse_min_coverage(text):
    """The canonical spelling of a --min-coverage value ('20', '80%'); argparse's type."""
    match = MIN_COVERAGE.fullmatch(str(text))
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a number of claims (20) nor a percentage (80%)")
    number, percent = float(match["number"]), bool(match["percent"])
    if percent:
        if not 0 < number <= 100:
            raise argparse.ArgumentTypeError(f"{text!r}: a percentage must be above 0 and "
                                             "at most 100")
        return f"{number:g}%"
    if number != int(number) or number < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the number of claims must be a whole number of at least 1 (a run that "
            "checks no claim fails anyway)")
    return str(int(number))


def spec_claims(claims):
    """How many claims coverage can count: the must- and should-level ones."""
    return sum(1 for claim in claims if getattr(claim, "level", None) in JUDGED_LEVELS
               or (isinstance(claim, dict) and claim.get("level") in JUDGED_LEVELS))


def impossible(min_coverage, available, spelling="--min-coverage"):
    """Why a --min-coverage count can never be met with `available` judged claims, or None."""
    if min_coverage and not str(min_coverage).endswith("%") and int(min_coverage) > available:
        return (f"{spelling} {min_coverage} asks for more claims than the spec has "
                f"({available} must- and should-level claims)")
    return None


def gate_reason(coverage, min_coverage=None, claims=()):
    """Why the run fails the coverage gate (one line naming the figures), or None.

    `claims` (the report's claims section) lends an unsupported claim's reason to the
    message when nothing was checked."""
    checked = coverage.get("checked", 0)
    applicable = coverage.get("applicable", 0)
    figure = f"{checked} of {applicable} applicable claims checked"
    if not checked:
        why = _nothing_checked(coverage, claims)
        return f"no claim was checked ({why}); a run that checks nothing cannot pass"
    if not min_coverage:
        return None
    wanted = str(min_coverage)
    if wanted.endswith("%"):
        percent = 100.0 * checked / applicable if applicable else 0.0
        if percent + 1e-9 < float(wanted[:-1]):
            return f"coverage {figure} ({percent:.1f}%) is below min-coverage {wanted}"
        return None
    if checked < int(wanted):
        return f"coverage {figure} is below min-coverage {wanted}"
    return None


def _nothing_checked(coverage, claims):
    unsupported = list(coverage.get("unsupported") or ())
    errored = list(coverage.get("errored") or ())
    parts = []
    if errored:
        parts.append(f"{len(errored)} claim(s) only errored")
    if unsupported:
        example = next((claim["reasons"][0] for claim in claims
                        if claim.get("id") in unsupported and claim.get("reasons")), None)
        parts.append(f"{len(unsupported)} claim(s) unsupported"
                     + (f", e.g. {' '.join(str(example).split())[:160]}" if example else ""))
    if not parts:
        return "no conformance test ran"
    return ", ".join(parts)
