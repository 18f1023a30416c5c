"""klconform benchmarks: run `python benchmarks/run.py` after the README's set-up.

Prints seven tables, every figure with its ratio:
  (a) wall time of the default `klconform run --impl torch` against the floor of starting
      Python with torch, pytest, hypothesis and yaml imported (target: within 2x), and of
      the same run with its calls made in turn (--calls-ahead off);
  (b) the oracle's time and peak extra memory against torch's own kl_div time on
      large-vocabulary data, for 'batchmean' and 'none' (targets: within 2x the time,
      within 3x the input bytes);
  (c) the speed-up of `-n 2` (pytest-xdist) over a serial run, default and thorough profile;
  (d) the cost of running each implementation call in the killable call worker;
  (e) a distillation loss's default run under its record against torch's (target: 1.5x);
  (f) each built-in record whose library is installed here against torch (target: 2x);
  (g) a broken function (every call raises; every 2-D 'sum' call crashes its process)
      against a correct one (target: no slower).
Figures are measured, never asserted: the notes record them.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from importlib.util import find_spec

import numpy as np

LARGE_SHAPES = ((32, 128_000), (64, 128_000), (8, 1_000_000))


def paired(first, second, repeats, warm_up=True):
    """Median times of two functions timed in alternation, and the median of the ratios
    second / first of each pair: on a shared machine load that comes and goes hits both
    sides of a pair alike, where two separate best-of series can catch different moments."""
    if warm_up:
        first()
        second()
    pairs = []
    for _ in range(repeats):
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        pairs.append((middle - start, time.perf_counter() - middle))
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(b / a for a, b in pairs))


def _run(command, env=None, allowed=(0,)):
    completed = subprocess.run(command, capture_output=True, text=True,
                               env=None if env is None else {**os.environ, **env})
    if completed.returncode not in allowed:
        sys.exit(f"benchmark command failed ({completed.returncode}): {' '.join(command)}\n"
                 f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}")


def wall_pairs(first, second, repeats, env=None, allowed=(0,)):
    """paired() for two commands; no warm-up run (a thorough run takes a minute)."""
    return paired(lambda: _run(first, env, allowed), lambda: _run(second, env, allowed),
                  repeats, warm_up=False)


def klconform_run(extra, report_dir, impl=("--impl", "torch")):
    return [sys.executable, "-m", "klconform.cli.main", "run", *impl,
            "--report-dir", report_dir, *extra]


# A token-level distillation loss (labels with -100, a mean over kept tokens) under its record.
DISTILLATION = ("--impl", "tests.distillation.losses:token_kd_labels",
                "--convention", "tests/distillation/records/token_kd_labels.yaml")


def distillation_times(repeats):
    """(e) a distillation record's default run against torch's (target: within 1.5x)."""
    with tempfile.TemporaryDirectory() as directory:
        torch_run, distillation, ratio = wall_pairs(
            klconform_run([], directory), klconform_run([], directory, DISTILLATION), repeats)
    table("(e) a distillation record's default run against torch's (in alternation; median "
          "of the ratios)", ["what", "seconds", "x torch"], [
              ["klconform run --impl torch", f"{torch_run:.2f}", "1.00"],
              ["klconform run --impl tests.distillation.losses:token_kd_labels "
               "--convention ...", f"{distillation:.2f}", f"{ratio:.2f}"]])


# Built-in records, the module each needs, and the environment its run needs. A record
# whose library is not installed here is listed as not measured.
BUILT_INS = (("numpy", "numpy", {}), ("scipy", "scipy", {}), ("torch-module", "torch", {}),
             ("torchmetrics", "torchmetrics", {}), ("jax", "jax", {}), ("optax", "optax", {}),
             ("keras-jax", "keras", {"KERAS_BACKEND": "jax"}),
             ("keras-tensorflow", "tensorflow", {"KERAS_BACKEND": "tensorflow"}),
             ("mlx", "mlx", {}), ("paddle", "paddle", {}), ("mindspore", "mindspore", {}))


# The records whose programs a run compiles ahead of their calls and keeps for later runs:
# each is measured with the programs an earlier run kept (a developer's next run, a CI job
# that caches the folder), on a first run (an empty folder, made afresh for each run), and on
# a first run on two workers (`-- -n 2`, where calls are not made ahead; klconform run's
# choice until stop 37). None of them reads or writes the user's own cache folder.
COMPILED_AHEAD = ("jax", "optax", "keras-jax")


def _compiled_ahead_variants(name, directory):
    """(command, label, warm up first) for the compiled record `name`."""
    kept = os.path.join(directory, f"compile-cache-{name}")
    empty = os.path.join(directory, f"empty-compile-cache-{name}")
    report = ("--impl", name)

    def afresh(*extra):
        run = klconform_run(["--compile-cache", empty, *extra], directory, report)
        return ["sh", "-c", 'rm -rf "$0" && exec "$@"', empty, *run]

    return [(klconform_run(["--compile-cache", kept], directory, report),
             f"{name} (programs kept by an earlier run)", True),
            (afresh(), f"{name} (first run: none kept)", False),
            (afresh("--", "-n", "2"), f"{name} (first run, 2 workers: -- -n 2)", False)]


def built_in_times(repeats):
    """(f) each installed built-in's default run against torch's (target: within 2x)."""
    rows = [["torch", "", "1.00"]]
    with tempfile.TemporaryDirectory() as directory:
        for name, module, env in BUILT_INS:
            if find_spec(module) is None:
                rows.append([name, "not installed here", ""])
                continue
            variants = _compiled_ahead_variants(name, directory) if name in COMPILED_AHEAD \
                else [(klconform_run([], directory, ("--impl", name)), name, False)]
            for command, label, warm_up in variants:
                if warm_up:
                    _run(command, env, allowed=(0, 1))
                # A failing run is still a run: exit 1 is a verdict, not a broken benchmark.
                torch_run, run, ratio = wall_pairs(klconform_run([], directory), command,
                                                   repeats, env, allowed=(0, 1))
                rows[0][1] = f"{torch_run:.2f}"
                rows.append([label, f"{run:.2f}", f"{ratio:.2f}"])
    table("(f) each built-in's default run against torch's (in alternation; median of the "
          "ratios)", ["--impl", "seconds", "x torch"], rows)


BROKEN_MODULE = textwrap.dedent("""
    import os

    import torch.nn.functional as F


    def correct(input, target, reduction="mean", log_target=False):
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)


    def wrong_array_type(input, target, reduction="mean", log_target=False):
        return correct(input, target, reduction, log_target).numpy()


    def crashes_on_2d_sum(input, target, reduction="mean", log_target=False):
        if input.dim() == 2 and reduction == "sum":
            os._exit(3)
        return correct(input, target, reduction, log_target)
""")


def broken_times(repeats):
    """(g) functions broken on every call, or crashing on one kind of call, against a
    correct one (target: no slower)."""
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, "bench_losses.py"), "w") as module:
            module.write(BROKEN_MODULE)
        env = {"PYTHONPATH": os.pathsep.join(filter(None, (directory,
                                                           os.environ.get("PYTHONPATH"))))}
        correct = klconform_run([], directory, ("--impl", "bench_losses:correct"))
        rows = []
        for name in ("wrong_array_type", "crashes_on_2d_sum"):
            correct_run, broken, ratio = wall_pairs(
                correct, klconform_run([], directory, ("--impl", f"bench_losses:{name}")),
                repeats, env, allowed=(0, 1))
            rows += [[f"bench_losses:{name}", f"{broken:.2f}", f"{ratio:.2f}"]]
        rows.insert(0, ["bench_losses:correct", f"{correct_run:.2f}", "1.00"])
    table("(g) broken functions against a correct one (in alternation; median of the ratios)",
          ["--impl", "seconds", "x correct"], rows)


def table(title, header, rows):
    print(f"\n{title}")
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, ["-" * w for w in widths], *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def run_times(repeats, thorough):
    with tempfile.TemporaryDirectory() as directory:
        floor, default, over_floor = wall_pairs(
            [sys.executable, "-c", "import torch, pytest, hypothesis, yaml"],
            klconform_run([], directory), repeats)
        # The same run with each call made when its test needs it (engine.calls_ahead).
        _, in_turn, in_turn_over_default = wall_pairs(
            klconform_run([], directory), klconform_run(["--calls-ahead", "off"], directory),
            repeats)
        serial, parallel, slowdown = wall_pairs(
            klconform_run([], directory), klconform_run(["--", "-n", "2"], directory), repeats)
        rows = [["klconform run --impl torch", f"{serial:.2f}", "1.00"],
                ["klconform run --impl torch -- -n 2", f"{parallel:.2f}", f"{1 / slowdown:.2f}"]]
        if thorough:
            fixed = ["--profile", "thorough", "--seed", "1"]
            serial, spread, slowdown = wall_pairs(
                klconform_run(fixed, directory),
                klconform_run([*fixed, "--", "-n", "2"], directory), 1)
            rows += [["klconform run --impl torch --profile thorough", f"{serial:.2f}", "1.00"],
                     ["klconform run --impl torch --profile thorough -- -n 2", f"{spread:.2f}",
                      f"{1 / slowdown:.2f}"]]
    table("(a) default run against the import floor (run in alternation; median of the "
          "ratios)", ["what", "seconds", "x floor"], [
              # Two decimals: the goal is a line (2x), which one decimal rounds across.
              ["python -c 'import torch, pytest, hypothesis, yaml'", f"{floor:.2f}", "1.00"],
              ["klconform run --impl torch", f"{default:.2f}", f"{over_floor:.2f}"],
              ["klconform run --impl torch --calls-ahead off", f"{in_turn:.2f}",
               f"{over_floor * in_turn_over_default:.2f}"],
          ])
    table("(c) pytest-xdist (speed-up: median of serial / parallel over alternating pairs)",
          ["what", "seconds", "speed-up"], rows)


def worker_overhead():
    from klconform.adapters.base import Call
    from klconform.engine import isolation
    from klconform.engine.worker_protocol import implementation_spec

    adapter = isolation.isolated(implementation_spec("torch"))
    rows = []
    for shape, repeats in (((4, 8), 300), ((32, 1024), 100), ((32, 128_000), 5)):
        width = shape[-1]
        call = Call(np.full(shape, -np.log(width)), np.full(shape, 1.0 / width),
                    dtype="float32", reduction="none")
        isolated, direct = isolation.measure_overhead(adapter, call, repeats)
        rows.append(["x".join(map(str, shape)), f"{direct * 1e3:.3f}", f"{isolated * 1e3:.3f}",
                     f"{(isolated - direct) * 1e3:.3f}", f"{isolated / direct:.2f}"])
    isolation.shutdown()
    table("(d) one call ('none', float32) in this process against the call worker",
          ["shape", "in-process ms", "worker ms", "overhead ms", "x"], rows)


def oracle_against_torch(repeats):
    import torch

    from klconform.oracle import float64 as oracle

    rng = np.random.default_rng(0)
    rows = []
    for shape in LARGE_SHAPES:
        for dtype in ("float32", "bfloat16"):
            logits = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
            labels = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
            x = torch.log_softmax(logits, -1).to(getattr(torch, dtype))
            t = torch.softmax(labels, -1).to(getattr(torch, dtype))
            # The oracle reads the implementation's inputs; bfloat16 reaches it as float32.
            x_np = x.float().numpy() if dtype == "bfloat16" else x.numpy()
            t_np = t.float().numpy() if dtype == "bfloat16" else t.numpy()
            input_bytes = x.element_size() * x.numel() * 2
            for reduction in ("batchmean", "none"):
                implementation, compute, ratio = paired(
                    lambda x=x, t=t, r=reduction: torch.nn.functional.kl_div(x, t, reduction=r),
                    lambda x_np=x_np, t_np=t_np, dtype=dtype, r=reduction:
                    oracle.expected(x_np, t_np, reduction=r, dtype=dtype), repeats)
                tracemalloc.start()
                oracle.expected(x_np, t_np, reduction=reduction, dtype=dtype)
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                rows.append([f"{shape[0]}x{shape[1]}", dtype, reduction,
                             f"{implementation * 1e3:.1f}", f"{compute * 1e3:.1f}",
                             f"{ratio:.2f}", f"{input_bytes / 2**20:.1f}",
                             f"{peak / 2**20:.1f}", f"{peak / input_bytes:.2f}"])
    table("(b) oracle against torch.nn.functional.kl_div (CPU, "
          f"{torch.get_num_threads()} threads)",
          ["shape", "dtype", "reduction", "torch ms", "oracle ms", "x torch (paired)",
           "input MiB",
           "oracle peak MiB", "x input"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("runs", "oracle", "worker", "distillation",
                                           "built-ins", "broken"), default=None)
    parser.add_argument("--no-thorough", action="store_true",
                        help="leave out the thorough-profile -n 2 comparison (minutes)")
    args = parser.parse_args()
    if args.only in (None, "oracle"):
        oracle_against_torch(max(args.repeats, 15))
    if args.only in (None, "worker"):
        worker_overhead()
    if args.only in (None, "runs"):
        run_times(args.repeats, thorough=not args.no_thorough)
    if args.only in (None, "distillation"):
        distillation_times(args.repeats)
    if args.only in (None, "built-ins"):
        built_in_times(args.repeats)
    if args.only in (None, "broken"):
        broken_times(args.repeats)


if __name__ == "__main__":
    main()
