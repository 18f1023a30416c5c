"""klconform benchmarks: run `python benchmarks/run.py` after the README's set-up.

Prints three tables:
  (a) wall time of the default `klconform run --impl torch` against the floor of starting
      Python with torch, pytest, hypothesis and yaml imported (target: within 3x);
  (b) the oracle's time and peak extra memory against torch's own kl_div time on
      large-vocabulary data (targets: within 3x the time, within 4x the input bytes);
  (c) the speed-up of `-n 2` (pytest-xdist) over a serial run.
Figures are measured, never asserted: the notes record them.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

LARGE_SHAPES = ((32, 128_000), (64, 128_000), (8, 1_000_000))


def wall(command, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if completed.returncode != 0:
            sys.exit(f"benchmark command failed ({completed.returncode}): {' '.join(command)}\n"
                     f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    return statistics.median(times)


def klconform_run(extra, report_dir):
    return [sys.executable, "-m", "klconform.cli.main", "run", "--impl", "torch",
            "--report-dir", report_dir, *extra]


def table(title, header, rows):
    print(f"\n{title}")
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, ["-" * w for w in widths], *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def run_times(repeats):
    floor = wall([sys.executable, "-c", "import torch, pytest, hypothesis, yaml"], repeats)
    with tempfile.TemporaryDirectory() as directory:
        default = wall(klconform_run([], directory), repeats)
        parallel = wall(klconform_run(["--", "-n", "2"], directory), repeats)
    table("(a) default run against the import floor", ["what", "seconds", "x floor"], [
        ["python -c 'import torch, pytest, hypothesis, yaml'", f"{floor:.2f}", "1.0"],
        ["klconform run --impl torch", f"{default:.2f}", f"{default / floor:.1f}"],
    ])
    table("(c) pytest-xdist", ["what", "seconds", "speed-up"], [
        ["klconform run --impl torch", f"{default:.2f}", "1.00"],
        ["klconform run --impl torch -- -n 2", f"{parallel:.2f}", f"{default / parallel:.2f}"],
    ])


def best_of(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


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
            implementation = best_of(
                lambda x=x, t=t: torch.nn.functional.kl_div(x, t, reduction="batchmean"),
                repeats)
            # The oracle reads the implementation's inputs; bfloat16 reaches it as float32.
            x_np = x.float().numpy() if dtype == "bfloat16" else x.numpy()
            t_np = t.float().numpy() if dtype == "bfloat16" else t.numpy()
            input_bytes = x.element_size() * x.numel() * 2
            compute = best_of(lambda x_np=x_np, t_np=t_np, dtype=dtype: oracle.expected(
                x_np, t_np, reduction="batchmean", dtype=dtype), repeats)
            tracemalloc.start()
            oracle.expected(x_np, t_np, reduction="batchmean", dtype=dtype)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append([f"{shape[0]}x{shape[1]}", dtype, f"{implementation * 1e3:.1f}",
                         f"{compute * 1e3:.1f}", f"{compute / implementation:.2f}",
                         f"{input_bytes / 2**20:.1f}", f"{peak / 2**20:.1f}",
                         f"{peak / input_bytes:.2f}"])
    table("(b) oracle against torch.nn.functional.kl_div (reduction='batchmean', CPU, "
          f"{torch.get_num_threads()} threads)",
          ["shape", "dtype", "torch ms", "oracle ms", "x torch", "input MiB",
           "oracle peak MiB", "x input"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("runs", "oracle"), default=None)
    args = parser.parse_args()
    if args.only in (None, "oracle"):
        oracle_against_torch(max(args.repeats, 3))
    if args.only in (None, "runs"):
        run_times(args.repeats)


if __name__ == "__main__":
    main()
