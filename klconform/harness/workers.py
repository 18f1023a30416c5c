"""Serial or pytest-xdist workers for a `klconform run`, whichever is faster here.

Chosen in the run's pytest process (`--kl-workers auto`, which `klconform run` passes unless
`-n` follows `--`), before pytest-xdist reads `-n`: that process imports the records and
their schema anyway, while `klconform run` itself would have imported them only to choose,
before it could start pytest (0.15 s of every run, benchmarks/RESULTS.md, stop 35).
"""

from importlib.util import find_spec

from klconform.constants import AUTO
from klconform.errors import KLConformError

# Examples per property from which the run is split over pytest-xdist workers. Each worker
# starts its own interpreter, library and call worker: at the thorough profile's 400 that
# pays (1.61x serial on 2 cores, benchmarks/RESULTS.md (c)); at the default 25, whose
# examples are replayed rather than drawn, -n 2 is no faster than serial (0.92x, RESULTS.md,
# stop 29) and holds the library twice.
PARALLEL_EXAMPLES = 100
MAX_WORKERS = 4
# A record that compiles each shape and shares its programs (engine.compile_ahead), where its
# calls are not made ahead (--kl-calls-ahead off, a GPU): two workers split the
# compilations and load each other's as soon as they are written (on 2 cores, first runs
# 0.83-0.95x the time of a serial run compiling ahead in a second child, later runs
# 0.82-0.92x; benchmarks/RESULTS.md, stop 33). Where its calls are made ahead, two children of
# the call worker make them, each at its own dtypes, in one serial run: faster still (stop 37).
COMPILING_WORKERS = 2


def choose_workers(option, impl, xdist_loaded=True):
    """(workers or 0 for serial, the sentence saying which and why) for the run of `impl`
    with `option`'s profile, seed, examples and record (--kl-convention). `xdist_loaded`:
    whether this pytest has pytest-xdist to split the run with."""
    from klconform.machine import usable_cores

    examples = _examples(option)
    cores = usable_cores()
    missing = "installed" if find_spec("xdist") is None else None if xdist_loaded \
        else "loaded (-p xdist)"
    if examples < PARALLEL_EXAMPLES:
        if cores >= 2 and _shares_compilations(impl, option.kl_convention):
            if option.kl_calls_ahead == AUTO and option.kl_device == "cpu":
                return 0, (f"serial: {impl} compiles a program per shape, and two children "
                           f"of the call worker make its calls ahead of the run, each at its "
                           f"own dtypes (pass -- -n N to split it over workers)")
            if missing:
                return 0, (f"serial: {impl} compiles a program per shape, which "
                           f"{COMPILING_WORKERS} workers would split, but pytest-xdist is "
                           f"not {missing}")
            return COMPILING_WORKERS, (
                f"{COMPILING_WORKERS} workers (pytest-xdist -n {COMPILING_WORKERS}): "
                f"{impl} compiles a program per shape, and the workers split the "
                f"compilations and share what they compiled (pass -- -n 0 for serial)")
        return 0, (f"serial: at {examples} examples per property, workers would be no faster "
                   f"and cost CPU and memory (pass -- -n N to split it)")
    if cores < 2:
        return 0, f"serial: {examples} examples per property, but one core"
    if missing:
        return 0, (f"serial: {examples} examples per property would run faster on "
                   f"{min(cores, MAX_WORKERS)} workers, but pytest-xdist is not {missing}")
    workers = min(cores, MAX_WORKERS)
    return workers, (f"{workers} workers (pytest-xdist -n {workers}): {examples} examples per "
                     f"property on {cores} cores run faster split than serial")


def serial_unless_compiling(option):
    """Whether choose_workers() picks serial for `option` unless --impl compiles each shape
    (known only once the records are read)."""
    return _examples(option) < PARALLEL_EXAMPLES


def _examples(option):
    """Examples per property at `option`'s profile, seed and --kl-max-examples."""
    from klconform.harness.hypothesis_profiles import describe

    return describe(option.kl_profile, option.kl_seed, option.kl_max_examples)["max_examples"]


def _shares_compilations(impl, convention):
    """Whether `impl` is a record that compiles each shape and shares its programs between
    processes (read from its record; its library is not imported)."""
    from klconform.adapters.arrays import bridge
    from klconform.adapters.convention import compiles_ahead
    from klconform.adapters.registry import builtin_records
    from klconform.spec.conventions import load_record

    try:
        record = load_record(convention) if convention \
            else builtin_records().get(impl)
    except KLConformError:
        return False   # the run itself says what is wrong with the record
    return record is not None and bool(record.arrays) \
        and compiles_ahead(record, bridge(record.arrays))
