"""The answers made ahead that a run did not take, kept for the next run of the same
implementation, whose ahead children leave those calls out.

A child making calls ahead (engine.calls_ahead) makes each test's calls as a passing
function's test makes them. A test that fails stops early (a property at its first failing
example, a gradient test without its finite differences), and what the child made after
that point is thrown away: 1,187 of the 1,808 calls a keras-jax run's children made, for its
known deviations (benchmarks/RESULTS.md, stop 38). The suites are deterministic, so the next
run of the same function takes the same answers; a call it needs after all (the function
changed) is made by the run itself, as any call not made ahead is. Nothing here decides a
result: it only says which calls are not worth making ahead.
"""

import hashlib
import json
import os

from klconform import __version__
from klconform.files import write_atomically
from klconform.resources import user_cache

FOLDER = "answers-not-taken"
FORMAT = 1


def path_for(identity):
    """The file of the implementation `identity` names (a tuple of what makes its calls:
    the --impl and --kl-convention, the device, the examples per property)."""
    digest = hashlib.sha256(repr((__version__, *identity)).encode()).hexdigest()[:24]
    return os.path.join(user_cache(FOLDER), f"{digest}.json")


def load(identity):
    """The keys of the calls the last run of `identity` did not take; none where there is
    no such run, or its file cannot be read as this version writes it."""
    try:
        with open(path_for(identity), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return frozenset()
    if not isinstance(data, dict) or data.get("format") != FORMAT \
            or not isinstance(data.get("keys"), list):
        return frozenset()
    return frozenset(key for key in data["keys"] if isinstance(key, str))


def save(identity, keys):
    """Keep `keys` for the next run of `identity`: written whole or not at all (a file
    half written by a run killed meanwhile would be read as another set)."""
    path = path_for(identity)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomically(path, json.dumps({"format": FORMAT, "keys": sorted(keys)}))
    except OSError:
        pass   # a read-only home: the next run's children make every call, as before


def updated(previous, received, taken, made_by_the_run):
    """The calls not worth making ahead after a run: those its children answered and it did
    not take, and those the last run did not take that this one neither took nor made
    itself (a test it did not reach, say)."""
    return (set(previous) - set(taken) - set(made_by_the_run)) | (set(received) - set(taken))
