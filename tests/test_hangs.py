"""An implementation that hangs costs a bounded time: its calls are killed, a property stops at
the first timeout, the circuit breaker stops calling it on the kind of input that hangs, the
report names the hung cases, and no process survives the run."""

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from klconform.adapters.base import Call
from klconform.constants import CALL_CRASHED, CALL_HUNG, NOT_RUN_ERROR, STOPPING_ERRORS
from klconform.engine import call_errors, isolation
from klconform.engine.breaker import HANG_LIMIT, REPEAT_LIMIT
from klconform.engine.properties import BY_ID, run_property
from klconform.engine.worker_protocol import implementation_spec
from klconform.report.root_causes import root_causes

HANGING_SOURCE = Path(__file__).with_name("hanging.py")


def timed(adapter, timeout):
    """The same implementation (the same breaker) under another per-call timeout."""
    return isolation.IsolatedAdapter(replace(adapter.spec, timeout=timeout), adapter.local)


def load_isolated(impl, timeout=60):
    return isolation.isolated(implementation_spec(impl, timeout=timeout))
# The default --kl-timeout (60 s) and HANG_LIMIT (2) make about 2 minutes of hanging; the
# issue's bound for the whole run is 5 minutes.
WALL_LIMIT_S = 300


def _tagged_processes(tag):
    """Pids of live processes (of this user) whose environment carries `tag`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if tag.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _start_run(tmp_path, function, *options):
    directory = tmp_path / function
    directory.mkdir()
    (directory / "hanging_kl.py").write_text(HANGING_SOURCE.read_text())
    tag = f"KLCONFORM_TEST_TAG_{uuid.uuid4().hex}"
    env = dict(os.environ, PYTHONPATH=str(directory), KLCONFORM_TEST_TAG=tag)
    process = subprocess.Popen(
        [sys.executable, "-m", "klconform.cli.main", "run", f"--impl=hanging_kl:{function}",
         *options], cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    return process, directory / "reports" / f"hanging_kl_{function}" / "report.json", tag


def _finish(process, report_path, tag, started):
    try:
        output, _ = process.communicate(timeout=WALL_LIMIT_S - (time.monotonic() - started))
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the run took over {WALL_LIMIT_S} s:\n{output[-3000:]}")
    assert process.returncode == 1, output[-3000:]
    time.sleep(0.5)  # a killed worker's exit is asynchronous to its parent's
    assert not _tagged_processes(tag), "a process of the run survived it"
    return json.loads(report_path.read_text()), output


def _hung_cases(report):
    hung = {}
    for failure in report["failures"]:
        text = " ".join(failure["checks"])
        if any(words in text for words in ("timed out", "no result after", "not run")):
            hung[failure["case"], failure["dtype"]] = text
    return hung


def _assert_report_names_the_hung_cases(report):
    hung = _hung_cases(report)
    assert hung, report["failures"]
    # 3-d inputs: the 3-d cases, and the layout check's stride-0 views of 2-d cases (the
    # expanded layout adds a leading axis).
    assert all("3d" in case or case.startswith("layout:") for case, _ in hung), sorted(hung)
    assert any(case.startswith("layout:") and "2d" in case for case, _ in hung), sorted(hung)
    assert sum("no result after" in text for text in hung.values()) == HANG_LIMIT
    assert any("not run: the implementation hung" in text for text in hung.values())
    assert report["summary"]["passed"] > 200  # everything else ran


@pytest.mark.slow
def test_hanging_implementation_at_default_settings_ends_in_bounded_time(tmp_path):
    started = time.monotonic()
    runs = [_start_run(tmp_path, function) for function in ("sleeps", "spins")]
    for process, report_path, tag in runs:
        report, _ = _finish(process, report_path, tag, started)
        _assert_report_names_the_hung_cases(report)
    assert time.monotonic() - started < WALL_LIMIT_S


def test_hang_with_a_short_timeout_names_the_cases_and_leaves_nothing_behind(tmp_path):
    started = time.monotonic()
    process, report_path, tag = _start_run(tmp_path, "spins", "--timeout", "1")
    report, output = _finish(process, report_path, tag, started)
    _assert_report_names_the_hung_cases(report)
    assert "CallTimeout" in output
    # The calls not made after the two that hung are the hang's root cause, not their own.
    causes = root_causes(report)
    assert [cause.title.split(":")[0] for cause in causes] == [
        "the implementation raised CallTimeout"], [cause.title for cause in causes]
    assert "klconform: 1 root cause of " in output


def test_breaker_is_per_kind_of_input_dtype_included():
    adapter = load_isolated("tests.hanging:spins_in_float16")
    x = np.log(np.full((2, 3), 1 / 3))
    t = np.full((2, 3), 1 / 3)
    half = Call(x, t, dtype="float16", reduction="sum")
    single = Call(x, t, dtype="float32", reduction="sum")
    for _ in range(HANG_LIMIT):
        with pytest.raises(call_errors.CallTimeout, match="no result after"):
            timed(adapter, 0.5).run(half)
        # The same number of dimensions in another dtype keeps working, and does not
        # reset the float16 streak.
        assert timed(adapter, 30).run(single).shape == ()
    started = time.monotonic()
    with pytest.raises(call_errors.CallNotRun, match="2-d inputs in float16"):
        timed(adapter, 0.5).run(half)
    assert time.monotonic() - started < 0.4  # refused without calling
    assert timed(adapter, 30).run(single).shape == ()


def test_breaker_stops_a_dtype_that_hung_at_two_ranks():
    adapter = load_isolated("tests.hanging:spins_in_half_precision")

    def uniform(shape, dtype):
        return Call(np.log(np.full(shape, 1 / shape[-1])), np.full(shape, 1 / shape[-1]),
                    dtype=dtype, reduction="sum")

    for shape in ((3,), (2, 3)):
        with pytest.raises(call_errors.CallTimeout, match="no result after"):
            timed(adapter, 0.5).run(uniform(shape, "float16"))
    started = time.monotonic()
    # A third rank is not waited on again: at the default timeout that is a minute a rank.
    with pytest.raises(call_errors.CallNotRun, match="with inputs in float16 "):
        timed(adapter, 0.5).run(uniform((2, 2, 3), "float16"))
    assert time.monotonic() - started < 0.4
    assert timed(adapter, 30).run(uniform((2, 2, 3), "float32")).shape == ()


def _property_calls(monkeypatch, impl, property_id, dtype, timeout):
    """(outcome, [(input shape, reduction)] of every call) of one property's search, under
    the settings a run has (no deadline: the call worker's start is not the call)."""
    from klconform.harness.hypothesis_profiles import configure

    configure("default")
    calls = []
    real = isolation.call_in_worker

    def counting(spec, method, call):
        calls.append((call.input.shape, call.reduction))
        return real(spec, method, call)

    monkeypatch.setattr(isolation, "call_in_worker", counting)
    outcome = run_property(BY_ID[property_id], load_isolated(impl, timeout), dtype)
    return outcome, calls


def test_property_stops_at_the_first_timeout_without_shrinking(monkeypatch):
    outcome, calls = _property_calls(monkeypatch, "tests.hanging:spins", "none-keeps-shape",
                                     "float64", 0.5)
    assert outcome.status == "errored"
    assert "raised CallTimeout on the" in outcome.checks[0]
    assert "no result after 0.5 s" in outcome.checks[0]
    hung = [shape for shape, _ in calls if len(shape) == 3]
    assert len(hung) == 1, f"the property called the hanging shape again: {calls}"
    assert len(calls[-1][0]) == 3  # nothing after the timeout


def _uniform(shape, dtype="float32", reduction="sum"):
    classes = shape[-1]
    return Call(np.log(np.full(shape, 1 / classes)), np.full(shape, 1 / classes), dtype=dtype,
                reduction=reduction)


def test_breaker_counts_crashes_as_it_counts_hangs():
    adapter = load_isolated("tests.hanging:exits_on_2d_sum")
    crashing = _uniform((2, 3))
    for _ in range(HANG_LIMIT):
        with pytest.raises(call_errors.WorkerCrashed, match="exit status 3"):
            adapter.run(crashing)
    started = time.monotonic()
    with pytest.raises(call_errors.CallNotRun, match="hung or crashed on 2 calls in a row with "
                                                   "2-d inputs.*crashed"):
        adapter.run(crashing)
    assert time.monotonic() - started < 0.4  # refused without starting a worker's imports
    assert adapter.run(_uniform((3,))).shape == ()


def test_property_stops_at_the_first_crash_without_shrinking(monkeypatch):
    outcome, calls = _property_calls(monkeypatch, "tests.hanging:exits_on_2d_sum_in_a_property",
                                     "sum-equals-none-sum", "float32", 60)
    assert outcome.status == "errored"
    assert "crashed the call worker process (exit status 3)" in outcome.checks[0]
    crashed = [shape for shape, reduction in calls if len(shape) == 2 and reduction == "sum"]
    assert len(crashed) == 1, f"the property called the crashing kind again: {calls}"


def test_the_same_error_on_every_call_is_raised_again_without_calling():
    adapter = load_isolated("tests.hanging:returns_numpy")
    kinds = [_uniform((2, 3)), _uniform((4,), reduction="mean"), _uniform((2, 2, 3))]
    errors = []
    for index in range(REPEAT_LIMIT):
        with pytest.raises(Exception) as raised:
            adapter.run(kinds[index % len(kinds)])
        assert not getattr(raised.value, "replayed", None)
        errors.append(raised.value)
    calls = []
    real = isolation.CallWorker.call
    isolation.CallWorker.call = lambda *args, **kwargs: calls.append(args) or real(*args,
                                                                                   **kwargs)
    try:
        with pytest.raises(Exception) as raised:
            adapter.run(_uniform((5, 7)))
        assert not calls
        assert type(raised.value).__name__ == type(errors[0]).__name__
        assert str(raised.value) == str(errors[0]) and "returned ndarray" in str(errors[0])
        assert "never returned a value" in raised.value.replayed
        # Counted per dtype: another dtype's calls are still made (numpy has no bfloat16,
        # so such a function raises differently there).
        with pytest.raises(Exception) as raised:
            adapter.run(_uniform((5, 7), "float64"))
        assert len(calls) == 1 and not getattr(raised.value, "replayed", None)
    finally:
        isolation.CallWorker.call = real


def test_a_function_that_has_returned_is_always_called_again():
    # It raises on every 'sum' (a deliberate refusal, as for an invalid reduction), but its
    # first call returned: each later call is made and answered by the function itself.
    adapter = load_isolated("tests.hanging:rejects_sum")
    assert adapter.run(_uniform((2, 3), reduction="mean")).shape == ()
    for index in range(REPEAT_LIMIT + 2):
        with pytest.raises(ValueError, match="no 'sum'") as raised:
            adapter.run(_uniform((2, index + 2)))
        assert not getattr(raised.value, "replayed", None)


def test_the_report_reads_the_breakers_words_as_the_engine_writes_them():
    # report.root_causes joins a call not made to the crash or hang it names, by these names.
    assert call_errors.CallNotRun.__name__ == NOT_RUN_ERROR
    assert STOPPING_ERRORS == {CALL_CRASHED: call_errors.WorkerCrashed.__name__,
                               CALL_HUNG: call_errors.CallTimeout.__name__}
