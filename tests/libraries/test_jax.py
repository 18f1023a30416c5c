"""The `jax` record (jax.scipy.special.rel_entr) against jax itself."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
# The records ask for 64-bit mode; these direct calls must not depend on a record having
# been loaded first.
jax.config.update("jax_enable_x64", True)
special = pytest.importorskip("jax.scipy.special")

from tests.libraries.record_checks import (  # noqa: E402
    LOG_PREDICTION,
    TARGET,
    canonical_gradients,
    canonical_value,
)

RECORD = "jax"


def test_record_argument_order_is_truth_first():
    import jax.numpy as jnp

    prediction = np.exp(LOG_PREDICTION)
    terms = np.asarray(special.rel_entr(jnp.asarray(TARGET), jnp.asarray(prediction)))
    np.testing.assert_allclose(terms, TARGET * np.log(TARGET / prediction), rtol=1e-14)
    swapped = np.asarray(special.rel_entr(jnp.asarray(prediction), jnp.asarray(TARGET)))
    assert not np.allclose(swapped.sum(), terms.sum())


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
def test_canonical_values_float64(reduction):
    observation, expected = canonical_value(RECORD, reduction)
    assert observation.dtype == "float64"
    np.testing.assert_allclose(observation.value, expected, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_result_keeps_the_dtype(dtype):
    observation, expected = canonical_value(RECORD, "none", dtype=dtype)
    assert observation.dtype == dtype
    np.testing.assert_allclose(observation.value, expected, rtol=3e-2, atol=1e-2)


@pytest.mark.parametrize("reduction", ["sum", "batchmean"])
def test_gradients_through_jax_grad(reduction):
    (grad_input, grad_target), (want_input, want_target) = canonical_gradients(RECORD, reduction)
    np.testing.assert_allclose(grad_input, want_input, rtol=1e-13)
    np.testing.assert_allclose(grad_target, want_target, rtol=1e-13)


def test_deviation_nan_propagates_nan_gives_inf():
    # The record's nan-propagates deviation: any NaN argument gives +inf, not NaN.
    import jax.numpy as jnp

    for p, q in ((jnp.nan, 0.5), (0.5, jnp.nan), (0.0, jnp.nan)):
        assert np.asarray(special.rel_entr(p, q)) == np.inf


def test_a_jit_record_compiles_one_program_per_shape_and_reuses_it():
    from klconform.adapters import load_adapter
    from klconform.adapters.base import Call

    adapter = load_adapter(RECORD)
    assert adapter.record.jit
    rng = np.random.default_rng(0)

    def call(shape):
        log_q = np.log(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]))
        return Call(log_q, rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]),
                    dtype="float32", reduction="sum")

    for shape in ((2, 3), (2, 3), (4, 5), (2, 3)):
        adapter.run(call(shape))
        adapter.run_gradients(call(shape))
    (compiled,) = adapter._callers.values()
    programs = {kind: compiled.program(kind, {}) for kind in ("value", "gradients")}
    # Two shapes, so two compilations of each, however many calls there were.
    assert {kind: program._cache_size() for kind, program in programs.items()} == {
        "value": 2, "gradients": 2}


def untraceable_rel_entr(target, prediction):
    """Branches in Python on a value, as eager-only code may."""
    import jax.numpy as jnp

    if float(jnp.min(prediction)) <= 0:
        raise ValueError("a zero probability")
    return special.rel_entr(target, prediction)


def test_a_function_jax_jit_cannot_trace_errors_naming_the_record_field(tmp_path):
    from klconform.adapters import load_adapter
    from klconform.adapters.base import Call, ImplementationResultError

    record = tmp_path / "untraceable.yaml"
    record.write_text(
        "name: untraceable\ndescription: a Python branch on a value, under jit\n"
        f"function: {__name__}:untraceable_rel_entr\narrays: jax\n"
        "setup: {jax_enable_x64: true}\narguments: [target, prediction]\n"
        "spaces: {prediction: probabilities, target: probabilities}\n"
        "output: elementwise\ndtypes: {cpu: [float64]}\nautograd: jax\njit: true\n")
    call = Call(LOG_PREDICTION, TARGET, dtype="float64", reduction="sum")
    with pytest.raises(ImplementationResultError, match=r"jit: true\).*set jit: false"):
        load_adapter(f"{__name__}:untraceable_rel_entr", convention=str(record)).run(call)
    # The same record without jit calls it operation by operation, and it works.
    record.write_text(record.read_text().replace("jit: true\n", ""))
    eager = load_adapter(f"{__name__}:untraceable_rel_entr", convention=str(record)).run(call)
    np.testing.assert_allclose(eager.value, canonical_value(RECORD, "sum")[1], rtol=1e-13)


# The call worker's side of compiling ahead: every program the case's calls need, loaded.
_LOADS_COMPILED_AHEAD = """
import logging, sys
from klconform.adapters import load_adapter
from klconform.engine.planned_calls import calls_of
from klconform.spec.cases import load_cases

hits = []
class Hits(logging.Handler):
    def emit(self, record):
        if "cache hit" in record.getMessage():
            hits.append(record.getMessage())
logging.getLogger("jax").addHandler(Hits())
logging.getLogger("jax").setLevel(logging.DEBUG)
adapter = load_adapter("jax")
case = next(case for case in load_cases() if case.id == sys.argv[1])
for method, call in calls_of("gradient", case, "float32", adapter, {"device": "cpu"}):
    getattr(adapter, method)(call)
print(len(hits))
"""


def test_the_call_worker_loads_what_was_compiled_ahead_instead_of_compiling_it(tmp_path):
    import os
    import pickle
    import subprocess
    import sys

    from klconform.adapters.arrays import COMPILED_AHEAD_VARIABLE, COMPILED_HERE_VARIABLE
    from klconform.engine import compile_ahead
    from klconform.engine.worker_protocol import implementation_spec
    from klconform.spec.cases import load_cases

    case = next(case for case in load_cases() if case.id == "roles-kl-p-given-q")
    programs, run = tmp_path / compile_ahead.PROGRAMS, tmp_path / "run"
    run.mkdir()
    with open(run / compile_ahead.PLAN, "wb") as handle:
        pickle.dump({"implementation": implementation_spec("jax").as_data(),
                     "tests": [("gradient", case, "float32")], "device": "cpu",
                     "max_examples": None, "sys_path": sys.path}, handle)
    environment = {key: value for key, value in os.environ.items()
                   if key != "JAX_COMPILATION_CACHE_DIR"}
    subprocess.run([sys.executable, "-m", "klconform.engine.compile_ahead_worker",
                    str(run), str(os.getpid())], check=True, timeout=300,
                   env={**environment, COMPILED_AHEAD_VARIABLE: str(programs),
                        COMPILED_HERE_VARIABLE: str(run / compile_ahead.STAGING)})
    (scope,) = os.listdir(programs)   # one build of jax on one CPU
    programs = programs / scope
    compiled = os.listdir(programs)
    assert len(compiled) >= 2   # the value's program and the gradients'
    # Each shared as the call that compiled it returned, the same file as the child's own.
    assert sorted(os.listdir(run / compile_ahead.STAGING / scope)) == sorted(compiled)
    own = tmp_path / "worker"
    loads = subprocess.run(
        [sys.executable, "-c", _LOADS_COMPILED_AHEAD, case.id], capture_output=True, text=True,
        env={**environment, COMPILED_AHEAD_VARIABLE: str(programs.parent),
             COMPILED_HERE_VARIABLE: str(own)}, timeout=300)
    assert loads.returncode == 0, loads.stderr[-2000:]
    assert int(loads.stdout.split()[-1]) >= 2
    # The worker wrote nothing into the shared folder; what it loaded came through links.
    assert sorted(os.listdir(programs)) == sorted(compiled)
    assert set(compiled) <= set(os.listdir(own / scope))


_COMPILES_APART = """
import os, sys
import numpy as np
from klconform.adapters import load_adapter
from klconform.adapters.base import Call
from klconform.adapters.convention import compile_apart

adapter = load_adapter("jax")
if sys.argv[1] == "apart":
    compile_apart("ahead-test")
adapter.run(Call(np.full((3, 5), 0.2), np.full((3, 5), 0.2), "float32", reduction="none"))
"""


def test_a_forked_ahead_child_compiles_into_a_folder_of_its_own_and_shares_from_it(tmp_path):
    """The ahead child is a fork of the call worker beside the worker's other child: each
    writes its programs into its own folder (one sharing what appeared in a folder both
    write in could share the other's half-written entry), and the shared folder gets both."""
    import os
    import subprocess
    import sys

    from klconform.adapters.arrays import COMPILED_AHEAD_VARIABLE, COMPILED_HERE_VARIABLE

    shared, own = tmp_path / "programs", tmp_path / "run" / "worker"
    environment = {key: value for key, value in os.environ.items()
                   if key != "JAX_COMPILATION_CACHE_DIR"}
    environment.update({COMPILED_AHEAD_VARIABLE: str(shared), COMPILED_HERE_VARIABLE: str(own)})
    for how in ("apart", "in place"):
        finished = subprocess.run([sys.executable, "-c", _COMPILES_APART, how],
                                  capture_output=True, text=True, env=environment, timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]
    (scope,) = os.listdir(shared)
    apart = tmp_path / "run" / "worker-ahead-test" / scope
    written_apart = set(os.listdir(apart))
    assert written_apart and written_apart <= set(os.listdir(shared / scope))
    # The second process found the first's program through the shared folder: it compiled
    # nothing of its own.
    assert set(os.listdir(own / scope)) == written_apart
    assert all(os.stat(own / scope / name).st_ino == os.stat(apart / name).st_ino
               for name in written_apart)


def test_a_second_run_loads_the_programs_the_first_kept(tmp_path):
    """Both runs' every program, the call worker's own compilations included: the second
    compiles none."""
    import os
    import re
    import subprocess
    import sys

    from klconform.engine import compile_ahead

    cache = tmp_path / "cache"
    environment = _own_caches(tmp_path)

    def run():
        finished = subprocess.run(
            [sys.executable, "-m", "klconform.cli.main", "run", "--impl", "jax",
             "--compile-cache", str(cache), "--report-dir", str(tmp_path / "report"), "--",
             "-k", "batchmean-2d or sum-equals-none-sum"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env={**environment, "JAX_LOG_COMPILES": "1", "JAX_EXPLAIN_CACHE_MISSES": "1"})
        assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
        return finished.stdout + finished.stderr

    first = run()
    # By key: the run's worker and the child making its calls ahead may both compile one.
    missed = len(set(re.findall(r"PERSISTENT COMPILATION CACHE MISS for '[^']*' with key "
                                r"'([^']*)'", first)))
    (scope,) = os.listdir(cache / compile_ahead.PROGRAMS)
    kept = os.listdir(cache / compile_ahead.PROGRAMS / scope)
    assert missed > 0 and len(kept) >= missed
    assert os.listdir(cache / compile_ahead.RUNS) == []
    second = run()
    assert "PERSISTENT COMPILATION CACHE MISS" not in second
    assert second.count("Persistent compilation cache hit") >= missed
    assert sorted(os.listdir(cache / compile_ahead.PROGRAMS / scope)) == sorted(kept)


def test_a_run_s_report_is_the_same_with_its_calls_made_ahead_by_two_children(tmp_path):
    """Two children making the calls ahead, by dtype, against none (the calls made when each
    test needs them): every verdict, claim, deviation and root cause the same."""
    import json
    import subprocess
    import sys

    environment = _own_caches(tmp_path)

    def report(*options):
        folder = tmp_path / "-".join(("report",) + options)
        finished = subprocess.run(
            [sys.executable, "-m", "klconform.cli.main", "run", "--impl", "jax",
             "--compile-cache", str(tmp_path / "cache"), "--report-dir", str(folder),
             *options, "--", "-n", "0"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=environment)
        assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
        with open(folder / "report.json") as handle:
            data = json.load(handle)
        return {key: value for key, value in data.items() if key not in ("run", "environment")}

    ahead = report()
    assert ahead["verdict"] == "pass"
    assert json.dumps(ahead, sort_keys=True) == \
        json.dumps(report("--calls-ahead", "off"), sort_keys=True)


def _own_caches(tmp_path):
    """The environment of a run whose compiled programs klconform keeps (jax's own
    persistent cache, which the tox env sets, left out), and whose other kept files go to
    `tmp_path`, not the user's cache folder."""
    import os

    return {**{key: value for key, value in os.environ.items()
               if key != "JAX_COMPILATION_CACHE_DIR"}, "XDG_CACHE_HOME": str(tmp_path / "xdg")}


def clipped_rel_entr(p, q):
    """rel_entr of probabilities clipped to [1e-7, 1] first, as keras computes its KL."""
    import jax.numpy as jnp

    p, q = jnp.clip(p, 1e-7, 1.0), jnp.clip(q, 1e-7, 1.0)
    return p * jnp.log(p / q)


def test_a_second_run_s_children_leave_out_what_the_first_did_not_take(tmp_path):
    """A clipped KL fails properties at an early example and float64 gradients before their
    finite differences: the children's answers after that are kept as not taken, the next
    run's children leave them out, and its report is the same."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from klconform.engine import answers_not_taken

    environment = _own_caches(tmp_path)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), environment.get("PYTHONPATH", "")])
    kept = tmp_path / "xdg" / "klconform" / answers_not_taken.FOLDER
    record = tmp_path / "clipped.yaml"
    record.write_text(
        "name: clipped\ndescription: rel_entr of clipped probabilities, under jit\n"
        f"function: {__name__}:clipped_rel_entr\narrays: jax\n"
        "setup: {jax_enable_x64: true}\narguments: [target, prediction]\n"
        "spaces: {prediction: probabilities, target: probabilities}\n"
        "output: elementwise\ndtypes: {cpu: [float32, float64]}\nautograd: jax\n"
        "compiles_per_shape: true\njit: true\n")

    def report(*options):
        # One folder for the three runs, one after the other: its name is in the report.
        folder = tmp_path / "report"
        finished = subprocess.run(
            [sys.executable, "-m", "klconform.cli.main", "run", "--impl",
             f"{__name__}:clipped_rel_entr", "--convention", str(record),
             "--report-dir", str(folder), *options, "--", "-k", "batchmean or normalized"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=environment)
        assert finished.returncode == 1, finished.stdout[-2000:] + finished.stderr[-2000:]
        with open(folder / "report.json") as handle:
            data = json.load(handle)
        return {key: value for key, value in data.items() if key not in ("run", "environment")}

    off = report("--compile-cache", "off")
    assert not kept.exists()   # nothing kept between runs
    first = report()
    (name,) = os.listdir(kept)
    with open(kept / name) as handle:
        assert json.load(handle)["keys"]
    assert json.dumps(report(), sort_keys=True) == json.dumps(first, sort_keys=True) \
        == json.dumps(off, sort_keys=True)
