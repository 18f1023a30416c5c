"""The cores this process may use, and how threads are shared when several processes run.

Read from the process's CPU affinity where the platform has one: a container or `taskset`
can give fewer cores than the machine has.
"""

import os

# The environment variable OpenMP reads at start-up: torch, numpy's BLAS, paddle and
# mindspore size their thread pools from it.
THREADS_VARIABLE = "OMP_NUM_THREADS"
# pytest-xdist names the number of its workers in each worker's environment.
XDIST_WORKERS_VARIABLE = "PYTEST_XDIST_WORKER_COUNT"


def usable_cores():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_process(processes):
    """Each of `processes` busy processes' share of the cores, at least one."""
    return max(1, usable_cores() // max(1, processes))


def pytest_processes():
    """The pytest processes of this run: pytest-xdist's workers, else this one."""
    try:
        return max(1, int(os.environ.get(XDIST_WORKERS_VARIABLE, "1")))
    except ValueError:
        return 1


def openmp_threads():
    """The threads OpenMP gives each parallel region here: its variable's leading number
    where set (it may list one per nesting level, "4,2"), else every usable core."""
    leading = os.environ.get(THREADS_VARIABLE, "").split(",")[0].strip()
    return int(leading) if leading.isdigit() and int(leading) > 0 else usable_cores()
