"""Making a run's calls ahead of it, so that the implementation's time overlaps the run's
checking instead of adding to it.

A run waits on each of its calls: at the default profile a correct torch function spent
about a third of its tests' time waiting for replies while the call worker sat idle between
them (benchmarks/RESULTS.md, stop 34). Where the call worker forks (engine.call_worker) and a
core is free for it, the run forks a second child of the worker, the *ahead child*, and sends
it the plan: the selected tests in the order they run (compile_ahead.planned_test). It makes
each test's calls as engine.planned_calls says the test makes them for an implementation that
answers as the oracle does, and streams back for each `making` (before the call) and then
its `returned` or `raised` answer, keyed by call_key(); after each test, `passed`; at the
end of the plan (or told to skip past it), `finished`.

The run, about to make a call, takes the ahead child's answer where one has the call's key;
where the ahead child made no such call in the run's test (a wrong implementation's checks
go elsewhere than the plan) or is behind the run, the run makes the call itself in the call
worker's usual child. For a library that compiles each new shape, two children share the
plan by dtype (a Share each) and the run waits for the one whose test it is: making the
calls itself, the run would compile their programs a second time. What it takes is what it
would have got: the same implementation, loaded in a fork of the same worker, called with a
Call that pickles to the same bytes. A call that hangs or crashes in the ahead child while
the run waits for it is that call's hang or crash, reported as the call worker's would be;
any other ends the ahead child, and the next test starts a new one that leaves out what the
circuit breaker refuses.
`--kl-calls-ahead off` turns it off, for an implementation whose results depend on the calls
made before it.
"""

import bisect
import hashlib
import math
import os
import select
import time
from dataclasses import fields

import numpy as np

from klconform.adapters.base import Call
from klconform.engine import answers_not_taken, prepared, wire
from klconform.engine import worker_protocol as protocol

# New ahead children after one hung or crashed: each costs a fork, and a function that
# crashes everywhere gains nothing from more.
MAX_STARTS = 8
KINDS = ("making", "returned", "raised", "passed", "finished")
# Ahead children for a library that compiles each new shape (jax: its calls cost the child
# 3-6x the run's checks of them), each making the calls of its own dtypes: one child, with
# the run making the calls of the tests it fell behind on, had 82 of its 90 programs
# compiled by both processes; on 2 cores two children took 0.88x its time (benchmarks/
# RESULTS.md, stop 37).
COMPILING_CHILDREN = 2
# How many tests past the run an ahead child that fell behind it jumps to: level with the
# run, the run would wait on each of its calls; the run makes those of the tests in between
# itself.
LEAD_TESTS = 4
# The ahead child's socket buffer: what it may say before the run reads it. At the default
# 208 KB, about 20 property tests' messages, a child far ahead stopped on a full socket
# (for up to 0.46 s) and then fell behind the run in the property tests, which cost it
# more than the run; the run waited 50-110 ms for it there (benchmarks/RESULTS.md, stop
# 36). The system's maximum (net.core.wmem_max) caps it.
SEND_BUFFER_BYTES = 4 << 20
# Which the child may run far enough ahead to fill with answers the run has not read yet,
# their large arrays in files in shared memory (engine.wire), which is RAM: a default torch
# run holds up to about 100 MB there at once; past this bound the child waits for the run.
MAX_UNREAD_BYTES = 256 << 20
# What the run waits at least for an ahead child that is not in a call (it starts, or plans
# the next one) before making its calls itself: only a broken child takes this long.
BETWEEN_CALLS_S = 30.0
_CALL_FIELDS = tuple(field.name for field in fields(Call))
# A call with more bytes than this in arrays made for it alone is made by the run itself.
# Digesting costs about 0.5 ms a MB on each side, making the call in the run more (the
# expanded layout of the vocabulary-sized case, 32 MB: 17 ms to digest, 50-95 ms to make;
# benchmarks/RESULTS.md, stop 36). A case's own arrays are digested once per process
# (engine.prepared.kept_digest), whatever their size.
MAX_BYTES = 1 << 26
# Below this an array is digested where it is: comparing it with a kept copy would cost more.
KEPT_DIGEST_BYTES = 1 << 16


def call_key(method, call):
    """What identifies a call in any process: a digest of the method and every field of the
    Call, each array by its dtype, shape, strides and the digest of its bytes, anything else
    by its repr (plain data: strings, numbers, tuples, the legacy keywords); None for an
    array of objects, whose bytes are addresses, and for a call with over MAX_BYTES in arrays
    other than a case's own (the run then makes those itself)."""
    digest = hashlib.sha256(method.encode())
    fresh = 0
    for name in _CALL_FIELDS:
        value = getattr(call, name)
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                return None
            part = prepared.kept_digest(value, _bytes_digest) \
                if value.nbytes >= KEPT_DIGEST_BYTES else None
            if part is None:
                fresh += value.nbytes
                if fresh > MAX_BYTES:
                    return None
                part = _bytes_digest(value)
            digest.update(f"|{name}:{value.dtype.str}{value.shape}{value.strides}:".encode())
            digest.update(part)
        else:
            digest.update(f"|{name}={type(value).__name__}:{value!r}".encode())
    return digest.hexdigest()[:32]


def _bytes_digest(array):
    # SHA-256, which most CPUs run in hardware, digests an array twice as fast as BLAKE2b
    # here (17 ms against 38 ms for 32 MB): a vocabulary-sized case's arrays are digested in
    # the run and in the ahead child.
    return hashlib.sha256(np.ascontiguousarray(array).data).digest()[:16]


class Answer:
    """What the ahead child said of a call: `returned` or `raised` (`message` holds it), or
    that it `hung` (no answer within the timeout) or `crashed` its process (`returncode`:
    how it ended)."""

    def __init__(self, kind, message=None):
        self.kind = kind
        self.message = message
        self.returncode = None


class AheadChild:
    """The run's side of one ahead child: its connection, where it is in the plan, and the
    answers read but not yet taken."""

    def __init__(self, pid, connection, timeout, first, owned=None):
        self.pid = pid
        self.connection = connection
        self.timeout = timeout if timeout and timeout > 0 else None
        # (test, key) -> the returned or raised messages, in the order made: a test can make
        # the same call twice (two examples that round to the same arrays).
        self.answers = {}
        # A `reached` sent and not yet answered by a `passed`: the child reads those only
        # between tests, so one at a time keeps the run from filling its socket.
        self.telling = False
        self.making = None      # (test, key, when the run heard of it)
        # The tests whose calls it makes: a share of the plan's (Share), or every one. A
        # child with a share is waited for, never sent past the run: the run making calls
        # of its share would compile their programs a second time.
        self.share = owned
        self.at = self._next_owned(first)   # the test it works on (it starts at `first`)
        self.ended = None       # why it is of no more use, once it is not
        self.crashed = False
        self.readable = readable(connection)
        self.answered = set()   # (test, key) of every call it answered

    def send(self, message):
        try:
            self.connection.send_bytes(wire.encode(message, os.getpid()))
        except OSError:
            self.end("its socket closed")

    def end(self, why, crashed=False):
        if self.ended is None:
            self.ended = why
            self.crashed = crashed

    def take(self, key, test):
        """The Answer to the call `key` of the run's test `test`, or None: the run makes it."""
        while True:
            made = self.answers.get((test, key))
            if made:
                found = made.pop(0)
                return Answer(found["kind"], found)
            if self.ended is not None:
                making = self.making
                if making is not None and making[1] == key and making[0] == test:
                    self.making = None
                    return Answer("crashed" if self.crashed else "hung")
                return None
            if self.at > test:
                return None    # past that test (made or skipped): not this call
            if self.at < test and self.share is None and not self._readable(0):
                self._tell(test)
                return None    # behind the run: its answer would come later than the call's
            self._read_one(test)

    def reached(self, test):
        """The run starts `test`: read what the child said up to it, end a child stuck in a
        call past the timeout (the run need not be waiting for that call: a stuck child
        would hold a core for the rest of the run), and tell one that is behind."""
        self.answers = {made: answer for made, answer in self.answers.items()
                        if made[0] >= test}
        while self.ended is None and self.at <= test and self._readable(0):
            self._read_one(test)
        if self.ended is None and self.making is not None and self.timeout is not None \
                and time.monotonic() - self.making[2] > self.timeout:
            self.end("a call made no answer within the timeout")
        if self.ended is None and self.at < test and self.share is None:
            self._tell(test)

    def _next_owned(self, test):
        return test if self.share is None else self.share.next_owned(test)

    def _tell(self, test):
        """Send a child behind the run LEAD_TESTS tests past it."""
        if not self.telling:
            self.telling = True
            self.send(protocol.reached(test + LEAD_TESTS))

    def _readable(self, timeout):
        try:
            return self.readable(timeout)
        except OSError:
            return True    # the read says how it ended

    def _read_one(self, test):
        """Read the ahead child's next message, waiting at most what is left of the timeout
        of the call it is making (between calls, while it plans, at least BETWEEN_CALLS_S)."""
        wait = self.timeout
        if wait is not None:
            wait = max(0.0, self.making[2] + wait - time.monotonic()) \
                if self.making is not None else max(wait, BETWEEN_CALLS_S)
        elsewhere = self.share is not None and (self.making is None or self.making[0] != test)
        if elsewhere:
            # Waited for while not in a call of the run's test (an earlier test's, one the run
            # will not take, or between calls): no call of the run's to time out, and with no
            # timeout it could hold the run forever; it gets BETWEEN_CALLS_S to make one.
            wait = BETWEEN_CALLS_S if wait is None else min(wait, BETWEEN_CALLS_S)
        if not self._readable(wait):
            self.end(f"it made no call of the run's test within {BETWEEN_CALLS_S:g} s"
                     if elsewhere
                     else "a call made no answer within the timeout" if self.making is not None
                     else f"it made no call within {BETWEEN_CALLS_S:g} s")
            return
        try:
            message = protocol.checked(wire.decode(self.connection.recv_bytes()), KINDS)
        except (EOFError, OSError):
            self.end("its process ended", crashed=self.making is not None)
            return
        except protocol.ProtocolError as error:
            self.end(str(error))
            return
        kind = message["kind"]
        if kind == "making":
            self.at = max(self.at, message["test"])
            self.making = (message["test"], message["key"], time.monotonic())
        elif kind == "passed":
            self.telling = False
            self.at = max(self.at, self._next_owned(message["test"] + 1))
        elif kind == "finished":
            # Past every test: told to skip beyond the plan's end, it made no more calls,
            # and a run level with where it stopped would wait for none.
            self.telling = False
            self.at = math.inf
        else:
            made_in = self.making[0] if self.making is not None else -1
            self.making = None
            self.answered.add((made_in, message.get("key")))
            if made_in >= test:
                self.answers.setdefault((made_in, message.get("key")), []).append(message)


class Share:
    """The tests of a plan whose calls one of several ahead children makes: those at its
    dtypes. A program is compiled for one dtype, so no two children compile the same one."""

    def __init__(self, plan, dtypes):
        self.dtypes = tuple(dtypes)
        self.owned = [index for index, (_, _, dtype) in enumerate(plan["tests"])
                      if dtype in self.dtypes]

    def next_owned(self, test):
        """The first test at or after `test` in this share (math.inf past the last)."""
        index = bisect.bisect_left(self.owned, test)
        return self.owned[index] if index < len(self.owned) else math.inf


def shares_of(plan, children):
    """The plan's tests split among `children` ahead children by dtype, in turn (one child:
    None, every test); the dtypes come from the plan, in the order they first appear."""
    if children <= 1:
        return [None]
    dtypes = list(dict.fromkeys(dtype for _, _, dtype in plan["tests"]))
    return [Share(plan, dtypes[index::children]) for index in range(children)]


class CallsAhead:
    """A run's making of calls ahead of one implementation: the plan, the current ahead
    children (one per share of the plan's tests, `plan["children"]`, by default one) and the
    run's place.
    `fork(plan, share)` starts an ahead child making the calls of `share` (a Share, or None:
    every test) as an AheadChild, or None where none can be had; `kill(child)` ends one."""

    def __init__(self, implementation, plan, fork, kill):
        self.implementation = implementation   # the key of the spec whose calls these are
        self.plan = plan
        self.fork = fork
        self.kill = kill
        self.shares = shares_of(plan, plan.get("children", 1))
        self.children = [None] * len(self.shares)
        self.starts = 0
        self.test = -1
        self.taken = 0          # calls answered ahead
        self.made_here = 0      # calls the run made itself while an ahead child ran
        self.ended = []         # why each ahead child ended early
        # Keys of the calls answered ahead and taken, made by the run itself, and answered
        # ahead ((test, key): engine.answers_not_taken).
        self.taken_keys, self.made_here_keys, self.answered = set(), set(), set()

    def _share_of(self, test):
        if len(self.shares) == 1 or not 0 <= test < len(self.plan["tests"]):
            return 0
        dtype = self.plan["tests"][test][2]
        return next(index for index, share in enumerate(self.shares) if dtype in share.dtypes)

    def reached(self, test, breaker):
        """The run starts the plan's test `test`; `breaker` says which calls not to make."""
        self.test = test
        for index, child in enumerate(self.children):
            if child is None:
                continue
            child.reached(test)
            if child.ended is not None:
                self.ended.append(child.ended)
                self._drop(index)
        owner = self._share_of(test)
        if self.children[owner] is None and self.starts < MAX_STARTS \
                and test < len(self.plan["tests"]):
            self.starts += 1
            share = self.shares[owner]
            self.children[owner] = self.fork({
                **self.plan, "first": test, "breaker": breaker,
                "dtypes": None if share is None else share.dtypes}, share)

    def take(self, method, call):
        """The ahead child's Answer to the call, or None: the run makes it itself."""
        owner = self._share_of(self.test)
        child = self.children[owner]
        if child is None or self.test < 0:
            return None
        key = call_key(method, call)
        answer = None if key is None else child.take(key, self.test)
        if answer is None:
            self.made_here += 1
            self.made_here_keys.add(key)
        elif answer.kind in ("returned", "raised"):
            self.taken += 1
            self.taken_keys.add(key)
        else:
            # Hung or crashed on the run's own call: the next test starts a new one.
            self.ended.append(child.ended)
            answer.returncode = self._drop(owner)
        return answer

    def _drop(self, index):
        """Kill the child of share `index`; how its process ended."""
        child = self.children[index]
        self.answered |= child.answered
        self.children[index] = None
        return self.kill(child)

    def not_taken(self):
        """The keys of the calls not worth making ahead in the next run of this
        implementation (engine.answers_not_taken): of the tests the run went past, what was
        answered ahead and not taken; None where the plan keeps none."""
        if "not_taken" not in self.plan:
            return None
        answered = {key for test, key in self.answered if test < self.test}
        return answers_not_taken.updated(self.plan.get("not_taken", ()), answered,
                                         self.taken_keys, self.made_here_keys)

    def summary(self):
        """Calls answered ahead, calls the run made itself while an ahead child ran, ahead
        children started, and why each that ended early did."""
        return {"taken": self.taken, "made_by_the_run": self.made_here,
                "children": self.starts, "ended": list(self.ended)}

    def stop(self):
        for index, child in enumerate(self.children):
            if child is not None:
                if child.ended is not None:
                    self.ended.append(child.ended)
                self._drop(index)


def readable(connection):
    """`readable(timeout)`: whether a message waits on `connection` or it closed, within
    `timeout` seconds (None: however long it takes). One poll object for the connection's
    life: the connection's own poll() builds a selector each time, a twentieth of the
    run's time reading the ahead child's messages (benchmarks/RESULTS.md, stop 36)."""
    if not hasattr(select, "poll"):
        return connection.poll
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)

    def ready(timeout):
        return bool(poller.poll(None if timeout is None else max(0, timeout) * 1000))

    return ready


def make_ahead(adapter, implementation_key, plan, connection, run_pid):
    """In the ahead child: make the plan's calls from its first test on, answering on
    `connection`, until the plan ends or the run closes the socket."""
    from klconform.engine.planned_calls import calls_of

    breaker = plan.get("breaker")
    tests = plan["tests"]
    test = plan["first"]
    dtypes = plan.get("dtypes")   # its share of the tests (Share), or None: every one
    # What the last run of the implementation did not take (engine.answers_not_taken).
    not_taken = plan.get("not_taken") or frozenset()

    def send(message):
        connection.send_bytes(wire.encode(message, run_pid))

    told = readable(connection)
    unread = []     # (path, bytes) of answers in shared memory the run has not read yet
    while test < len(tests):
        while told(0):
            message = protocol.checked(wire.decode(connection.recv_bytes()), ("reached",))
            test = max(test, message["test"])
        if test >= len(tests):
            break
        kind, subject, dtype = tests[test]
        if dtypes is not None and dtype not in dtypes:
            test += 1
            continue
        # The plan holds no call the implementation cannot be asked (planned_calls).
        for method, call in calls_of(kind, subject, dtype, adapter, plan, failure_paths=False):
            if breaker is not None and breaker.refuse(implementation_key, call):
                continue
            key = call_key(method, call)
            if key is None or key in not_taken:
                continue
            # Before `making`: the run times the call from it.
            _wait_for_the_run_to_read(unread)
            send(protocol.making(test, key))
            try:
                reply = wire.encode(protocol.returned(getattr(adapter, method)(call), key),
                                    run_pid, written=unread)
            except BaseException as error:   # as the call worker answers it (SystemExit too)
                reply = wire.encode(protocol.raised_rebuildable(error, key), run_pid)
            connection.send_bytes(reply)
        send(protocol.passed(test))
        test += 1
    send(protocol.finished())


def _wait_for_the_run_to_read(unread):
    """Wait while this child's answers in shared memory that the run has not read (it removes
    each file as it reads it) hold over MAX_UNREAD_BYTES: the next answer may then add one
    answer's bytes more."""
    while True:
        unread[:] = [(path, size) for path, size in unread if os.path.exists(path)]
        if sum(size for _, size in unread) <= MAX_UNREAD_BYTES:
            return
        time.sleep(0.005)
