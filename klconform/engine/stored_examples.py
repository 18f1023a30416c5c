"""The default profile's property examples, stored as the draws that make them.

At the default profile every property's search is derandomized: it draws the same examples
every run, and drawing them through Hypothesis took most of the property layer's time
(benchmarks/RESULTS.md). So the draws of each example (shape, reduction, log_target, kinds,
scale, generator seed: Example.draws) are stored in stored_examples.json beside this module,
per property, dtype and Drawing, with the Hypothesis version that drew them;
klconform.engine.properties makes the examples again from their draws and checks them in the
same order.

Where Hypothesis would have done anything but run them one after another (an example fails
and must be shrunk, or cannot be asked and must be replaced) it searches as before. A
Drawing with no stored entry is searched by Hypothesis too. With the Hypothesis version that
stored them the examples and every outcome are the same as its search's; with another, the
examples are the stored ones, the same as in the committed matrix.

tools/store_property_examples.py writes the file; tests/test_stored_examples.py checks it
against what the installed Hypothesis draws.
"""

import json
from functools import cache
from pathlib import Path

STORE = Path(__file__).with_name("stored_examples.json")
FORMAT = 1


class StoreError(Exception):
    """The stored examples' file cannot be read as this version of klconform writes it."""


def entry_key(property_id, dtype, drawing):
    """`drawing` is a Drawing's as_data(), or the same read back from JSON."""
    return json.dumps([property_id, dtype, drawing], sort_keys=True)


@cache
def _store(path=STORE):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise StoreError(f"{path}: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StoreError(f"{path}: not a stored-examples file of format {FORMAT}")
    entries = {}
    for number, entry in enumerate(data["entries"]):
        draws = entry.get("draws")
        if not isinstance(draws, list) or not draws:
            # No example would be checked at all: the property would pass on nothing.
            raise StoreError(f"{path}: entry {number} ({entry.get('property')}, "
                             f"{entry.get('dtype')}) has no draws")
        entries[entry_key(entry["property"], entry["dtype"], entry["drawing"])] = draws
    return data["hypothesis"], data["examples"], entries


def hypothesis_version(path=STORE):
    """The Hypothesis version that drew the stored examples."""
    return _store(path)[0]


def stored_draws(property_id, dtype, drawing, max_examples, path=STORE):
    """The stored draws of a search of `max_examples` examples, in order; None if not stored."""
    _, examples, entries = _store(path)
    if max_examples != examples:
        return None
    return entries.get(entry_key(property_id, dtype, drawing))


def write_store(entries, hypothesis, examples, path=STORE):
    """`entries`: (property id, dtype, drawing data, [draws, ...]), written one to a line so
    that a change of examples reads as a diff of the entries it touches."""
    lines = [json.dumps({"property": property_id, "dtype": dtype, "drawing": drawing,
                         "draws": [list(each) for each in draws]}, sort_keys=True,
                        separators=(",", ":"))
             for property_id, dtype, drawing, draws in sorted(
                 entries, key=lambda entry: entry_key(*entry[:3]))]
    header = json.dumps({"format": FORMAT, "hypothesis": hypothesis, "examples": examples})
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(header[:-1] + ', "entries": [\n' + ",\n".join(lines) + "\n]}\n")
    _store.cache_clear()
