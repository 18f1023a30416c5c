"""The function under diagnosis: what its signature offers, and calling it on probes.

The signature says which keywords to probe (a reduction, boolean flags, a class axis, a
temperature, a mask as labels or flags, a JSD weight) and which ones klconform cannot choose
for the user (required keywords it does not know: `--call NAME=VALUE`).
"""

import importlib.util
import inspect
import re
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from klconform.adapters.arrays import BRIDGE_MODULES, bridge
from klconform.adapters.native_form import LABEL_IGNORE_INDEX, mask_argument
from klconform.errors import KLConformError

# Packages whose functions take another package's arrays: that bridge is tried first.
HOME_ARRAYS = {"torchmetrics": "torch", "liger_kernel": "torch", "optax": "jax", "flax": "jax"}
TEMPERATURE_NAMES = ("temperature", "t", "tau", "temp", "kd_temperature")
AXIS_NAMES = ("axis", "dim")
# A keyword that names labels or a mask: labels, label, shift_labels, attention_mask,
# padding_mask, loss_mask, ...
MASK_NAME = re.compile(r"(^|_)(labels?|mask)($|_)")


class DiagnoseError(KLConformError):
    """The function cannot be probed at all (not callable, no array type works)."""


@dataclass
class CallResult:
    value: np.ndarray = None
    dtype: str = None
    error: str = None

    @property
    def ok(self):
        return self.error is None


@dataclass
class Signature:
    reduction: str = None            # the reduction keyword, if any
    reduction_default: object = None
    flags: dict = field(default_factory=dict)   # boolean keyword -> its default
    axis: str = None                 # the class-axis keyword, if any
    axis_default: int = None
    temperature: str = None          # the temperature keyword, if any
    temperature_default: float = None
    mask: str = None                 # the mask keyword, if any
    ignore_index: int = LABEL_IGNORE_INDEX
    beta: str = None                 # a JSD weight keyword, if any
    beta_default: float = None
    required: tuple = ()             # keywords without a default that klconform cannot fill
    documented_names: tuple = ()     # quoted words of the docstring
    doc: str = ""

    def mask_forms(self):
        """The ways the mask keyword may be meant, likeliest first."""
        if not self.mask:
            return [None]
        if "label" in self.mask.lower():
            return [{"keyword": self.mask, "style": "labels", "ignore_index": self.ignore_index}]
        styles = ["drop", "keep"] if "pad" in self.mask.lower() else ["keep", "drop"]
        kinds = ["float", "bool"] if re.search(r"\bfloat\b[^.]*\bmask\b", self.doc) \
            else ["bool", "float"]
        return [{"keyword": self.mask, "style": style, "dtype": kind}
                for kind in kinds for style in styles]


def read_signature(function):
    """The keywords a function takes after its two arrays, or a loss class's constructor
    keywords (through the base classes' where a constructor passes **kwargs on, as
    LigerKLDIVLoss does to nn.KLDivLoss)."""
    found = Signature()
    try:
        parameters = _keyword_parameters(function)
    except (TypeError, ValueError):
        return found
    named = [p.name for p in parameters]
    # 'reduction' itself, else a string-valued keyword named like it (not torch's legacy
    # boolean `reduce`).
    wanted = "reduction" if "reduction" in named else next(
        (p.name for p in parameters if "reduc" in p.name.lower()
         and isinstance(p.default, str)), None)
    required = []
    for parameter in parameters:
        name, default = parameter.name, parameter.default
        empty = default is parameter.empty
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name == wanted:
            found.reduction, found.reduction_default = name, None if empty else default
        elif isinstance(default, bool):
            found.flags[name] = default
        elif name in AXIS_NAMES and (empty or isinstance(default, int)):
            found.axis, found.axis_default = name, -1 if empty else default
        elif name.lower() in TEMPERATURE_NAMES and (empty or isinstance(default, (int, float))):
            found.temperature = name
            found.temperature_default = None if empty else float(default)
        elif MASK_NAME.search(name) and found.mask is None:
            found.mask = name
        elif name == "ignore_index" and isinstance(default, int):
            found.ignore_index = default
        elif name == "beta" and (empty or isinstance(default, (int, float))):
            found.beta, found.beta_default = name, None if empty else float(default)
        elif empty:
            required.append(name)
    found.required = tuple(required)
    found.doc = inspect.getdoc(function) or ""
    quoted = re.findall(r"""[`'"]{1,2}([A-Za-z_][A-Za-z0-9_]*)[`'"]{1,2}""", found.doc)
    found.documented_names = tuple(dict.fromkeys(quoted))
    return found


def _keyword_parameters(function):
    if not inspect.isclass(function):
        return list(inspect.signature(function).parameters.values())[2:]
    found = {}
    for klass in function.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        for parameter in parameters:
            found.setdefault(parameter.name, parameter)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return list(found.values())


class Subject:
    """The function (or loss class) under diagnosis, called through one array bridge.

    A loss class takes its reduction and flags as constructor keywords and is then called
    on the two arrays (and a mask); a function takes them all as keywords of the call.
    `fixed` keywords (from --call) go with every call."""

    def __init__(self, function, arrays, device="cpu", fixed=None):
        self.function = function
        self.arrays = arrays
        self.device = device
        self.fixed = dict(fixed or {})
        self.bridge = bridge(arrays)
        if arrays == "jax":
            self.bridge.setup({"jax_enable_x64": True})

    def _arguments(self, first, second, dtype, kept, mask):
        a = self.bridge.from_numpy(first, dtype, self.device)
        b = self.bridge.from_numpy(second, dtype, self.device)
        extra = {}
        if mask is not None:
            rows = np.ones(first.shape[:-1], dtype=bool) if kept is None else kept
            values, mask_dtype = mask_argument(mask, rows, dtype)
            extra[mask["keyword"]] = self.bridge.from_numpy(values, mask_dtype, self.device)
        return a, b, extra

    def _invoke(self, target, a, b, keywords, extra):
        keywords = {**self.fixed, **keywords}
        if inspect.isclass(target):
            return target(**keywords)(a, b, **extra)
        return target(a, b, **keywords, **extra)

    def call(self, first, second, dtype="float64", function=None, kept=None, mask=None,
             **keywords):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a, b, extra = self._arguments(first, second, dtype, kept, mask)
                result = self._invoke(function or self.function, a, b, keywords, extra)
                value, result_dtype, _ = self.bridge.to_numpy(result)
        except Exception as error:  # the function's own errors are evidence, not crashes
            return CallResult(error=f"{type(error).__name__}: {' '.join(str(error).split())[:120]}")
        return CallResult(np.asarray(value, dtype=np.float64), result_dtype)

    def gradients(self, first, second, kept=None, mask=None, **keywords):
        a, b, extra = self._arguments(first, second, "float64", kept, mask)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.bridge.gradients(
                lambda x, y: self._invoke(self.function, x, y, keywords, extra), a, b)


def array_candidates(function):
    """Array libraries to try: the function's own first, then numpy, then the rest, in the
    order the bridges are registered."""
    home = home_arrays(function)
    order = [home] if home in BRIDGE_MODULES else []
    order += [name for name in BRIDGE_MODULES if name not in order]
    return [name for name in order if importlib.util.find_spec(name) is not None]


def home_arrays(function):
    """The array library a function's own package computes with: keras's is its backend
    (KERAS_BACKEND, fixed when keras was imported), a bridge's own package is itself."""
    top = (getattr(function, "__module__", None) or "").split(".")[0]
    if top == "keras":
        return keras_backend()
    return HOME_ARRAYS.get(top, top if top in BRIDGE_MODULES else None)


def keras_backend():
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


@dataclass
class Prober:
    """One way of calling the subject: the probing dtype, the mask form, and the keywords
    every probe passes (a temperature to probe at)."""
    subject: Subject
    dtype: str
    mask: dict = None
    keywords: dict = field(default_factory=dict)

    def call(self, first, second, kept=None, function=None, dtype=None, **keywords):
        return self.subject.call(first, second, dtype or self.dtype, function, kept,
                                 self.mask, **{**self.keywords, **keywords})

    def observe(self, probes, function=None, **keywords):
        """[(probe, outcome)] of each probe."""
        return [(probe, self.call(probe.first, probe.second, probe.kept, function, **keywords))
                for probe in probes]

    def first_accepted(self, probes, **keywords):
        for probe in probes:
            outcome = self.call(probe.first, probe.second, probe.kept, **keywords)
            if outcome.ok:
                return probe, outcome
        return None, None
