"""Store the default profile's property examples (klconform/engine/stored_examples.json).

For every built-in implementation record, on each of its devices, every property and dtype
it can run: the examples the default profile's Hypothesis search draws, stored as their
draws. Implementations that draw alike share an entry. Run by a maintainer after a change to
the properties, the strategies, the records or the pinned Hypothesis (constraints.txt);
running it again must reproduce the committed file byte for byte. Needs no library but
klconform's own dependencies: the records are only asked what they can do.

    python tools/store_property_examples.py [--output PATH]
"""

import argparse
import os
import sys

import hypothesis

from klconform.adapters import convention
from klconform.adapters.registry import adapter_from_record, builtin_records
from klconform.dtypes import DTYPES
from klconform.engine import stored_examples
from klconform.engine.properties import PROPERTIES, drawn_examples
from klconform.harness.hypothesis_profiles import DEFAULT_EXAMPLES, configure
from klconform.spec.claims import load_spec


def drawings():
    """{stored_examples.entry_key: (property, dtype, drawing)} over the built-in records."""
    spec = load_spec()
    found = {}
    environment = dict(os.environ)
    check_installed = convention._check_installed
    # A record's capabilities and plans are read from the record alone (describe_only), so
    # whether its library is installed here changes nothing they say.
    convention._check_installed = lambda record, array_bridge: None
    try:
        for record in builtin_records().values():
            # Each record sets the environment its library needs (KERAS_BACKEND): one at a
            # time, and the caller's environment back at the end.
            os.environ.clear()
            os.environ.update(environment)
            adapter = adapter_from_record(record, describe_only=True)
            for device in adapter.capabilities.devices:
                for prop in PROPERTIES:
                    for dtype in DTYPES:
                        if not prop.makes_calls(adapter, dtype, device, spec):
                            continue
                        drawing = prop.drawing(adapter, dtype, device)
                        found.setdefault(
                            stored_examples.entry_key(prop.id, dtype, drawing.as_data()),
                            (prop, dtype, drawing))
    finally:
        convention._check_installed = check_installed
        os.environ.clear()
        os.environ.update(environment)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=stored_examples.STORE,
                        help="where to write (default: the package's own file)")
    output = parser.parse_args().output
    configure("default")
    entries = []
    for prop, dtype, drawing in drawings().values():
        draws = [example.draws for example in drawn_examples(prop, drawing, dtype)]
        entries.append((prop.id, dtype, drawing.as_data(), draws))
    stored_examples.write_store(entries, hypothesis.__version__, DEFAULT_EXAMPLES, output)
    print(f"{len(entries)} entries, {sum(len(entry[3]) for entry in entries)} examples, "
          f"hypothesis {hypothesis.__version__}: {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
