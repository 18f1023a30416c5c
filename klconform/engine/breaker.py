"""The circuit breaker of the call worker's calls (engine.isolation): it stops calling an
implementation on a kind of input it hung or crashed on, and stops calling a function that
raised the same error on every call it was ever given."""

from dataclasses import dataclass, field

from klconform.engine.call_errors import CallNotRun, rebuilt_error

HANG_LIMIT = 2
# A correct function raises on some inputs too (an invalid reduction, a probability row its
# validation rejects), but it returns a value on some call among its first few: only one
# that never has, with the same error on this many calls in a row of one dtype, of at least
# REPEAT_KINDS different shapes or reductions, is taken to raise it on every such call.
REPEAT_LIMIT = 8
REPEAT_KINDS = 3
# In place of the number of dimensions, in a kind of input that is its dtype alone.
DTYPE_ONLY = "any rank"


@dataclass
class _Repeated:
    """One error a function that never returned has raised in a row, in one dtype."""

    type_name: str
    text: str
    count: int = 1
    kinds: set = field(default_factory=set)   # (shape, reduction) of the calls


class CircuitBreaker:
    """Counts timeouts and crashes in a row per kind of input (a kind that hangs or crashes
    HANG_LIMIT times is off), and the same error in a row from a function that never
    returned (REPEAT_LIMIT of them, and every later call raises it again)."""

    def __init__(self, limit=HANG_LIMIT, repeat_limit=REPEAT_LIMIT):
        self.limit = limit
        self.repeat_limit = repeat_limit
        self.streaks = {}      # kind -> timeouts or crashes since a call of that kind returned
        self.hung = {}         # kind -> descriptions of the calls that timed out or crashed
        self.ranks = {}        # dtype-alone kind -> the numbers of dimensions of its streak
        self.returned_once = set()  # implementations that have returned a value
        self.repeats = {}      # (implementation, dtype) -> _Repeated

    @staticmethod
    def kinds(implementation, call):
        """The kinds of input `call` is of: its number of dimensions, that with its dtype,
        and its dtype alone (a function that hangs in float16 hangs at every rank: at the
        default timeout each rank's two hangs would cost two minutes). A dtype alone is off
        only once its calls hung at two ranks: hangs at one rank blame the rank."""
        ndim = getattr(getattr(call, "input", None), "ndim", None)
        dtype = getattr(call, "dtype", None)
        return ((implementation, ndim), (implementation, ndim, dtype),
                (implementation, DTYPE_ONLY, dtype))

    @staticmethod
    def describe(kind):
        ndim = kind[1]
        if ndim == DTYPE_ONLY:
            return f"inputs in {kind[2]}"
        text = f"{ndim}-d inputs" if ndim is not None else "these inputs"
        return text + (f" in {kind[2]}" if len(kind) > 2 else "")

    def refuse(self, implementation, call):
        """The exception to raise instead of making the call, or None: CallNotRun for a kind
        that hangs or crashes, the repeated error of a function broken for every call."""
        for kind in self.kinds(implementation, call):
            if kind[1] == DTYPE_ONLY and len(self.ranks.get(kind, ())) < 2:
                continue
            if self.streaks.get(kind, 0) >= self.limit:
                return CallNotRun(
                    f"not run: the implementation hung or crashed on {self.limit} calls in a "
                    f"row with {self.describe(kind)} "
                    f"({'; '.join(self.hung[kind][-self.limit:])}), so klconform stopped "
                    f"calling it with such inputs (--kl-timeout)")
        repeated = self.repeats.get((implementation, getattr(call, "dtype", None)))
        if repeated and repeated.count >= self.repeat_limit \
                and len(repeated.kinds) >= REPEAT_KINDS:
            # The same type name and text: the report groups it with the calls made.
            error = rebuilt_error(repeated.type_name, repeated.text)
            error.replayed = (f"not called: the implementation raised this on each of its "
                              f"first {repeated.count} calls and never returned a value")
            return error
        return None

    def returned(self, implementation, call):
        self.returned_once.add(implementation)
        self.repeats = {key: value for key, value in self.repeats.items()
                        if key[0] != implementation}
        for kind in self.kinds(implementation, call):
            self.streaks.pop(kind, None)
            self.ranks.pop(kind, None)

    def raised(self, implementation, call, error):
        """Counted per dtype: a function broken everywhere often fails differently in one
        dtype (numpy has no bfloat16), and that must not break the others' streaks."""
        if implementation in self.returned_once:
            return
        name, text = type(error).__name__, str(error)
        key = (implementation, getattr(call, "dtype", None))
        repeated = self.repeats.get(key)
        if repeated and (repeated.type_name, repeated.text) == (name, text):
            repeated.count += 1
        else:
            repeated = self.repeats[key] = _Repeated(name, text)
        repeated.kinds.add((getattr(getattr(call, "input", None), "shape", None),
                            getattr(call, "reduction", None)))

    def failed(self, implementation, call, label):
        """A call of this kind timed out or crashed the worker."""
        kinds = self.kinds(implementation, call)
        for kind in kinds:
            self.streaks[kind] = self.streaks.get(kind, 0) + 1
            self.hung.setdefault(kind, []).append(label)
        rank_kind, dtype_kind = kinds[0], kinds[-1]
        self.ranks.setdefault(dtype_kind, set()).add(rank_kind[1])
