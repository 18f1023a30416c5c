"""The generic adapter: any KL function described by an implementation record.

It maps a canonical call (input = log Q, target = P or log P, a canonical reduction) onto the
library's own convention: argument order, the space each argument is in, the native
reduction that computes the same thing on the shape at hand. Where the library has no such
reduction, klconform composes it from the library's finest output (elementwise terms or
per-row sums) and says so in the plan; where that is impossible the call is unsupported,
with the reason. Conversions between spaces are done in float64 and rounded once to the
dtype under test, and the plan names them so the budget can allow for that rounding.
"""

import contextlib
import importlib
import importlib.util
import os
from importlib import metadata

import numpy as np

from klconform import program_store
from klconform.adapters.arrays import COMPILED_AHEAD_VARIABLE, COMPILED_HERE_VARIABLE, bridge
from klconform.adapters.base import (
    PADDED_ROWS,
    Adapter,
    Call,
    Capabilities,
    ImplementationResultError,
    Observation,
    Plan,
    capability_gap,
    refuse_call_when_described,
)
from klconform.adapters.native_form import (
    mask_argument,
    native_form,
    rank_range,
    temperature_for,
)
from klconform.constants import REDUCTIONS
from klconform.dtypes import SMALLEST_NORMAL, UNIT_ROUNDOFF, round_to
from klconform.errors import ImplementationLoadError
from klconform.spec.conventions import (
    CANONICAL_MEANING,
    MEANING_TEXT,
    NO_ARGUMENT,
    SCALAR_MEANINGS,
    divisor,
)

# Spaces whose values are log P up to a constant: log P itself is a valid member of each.
LOG_SPACES = ("log-probabilities", "logits")
GRADIENT_CLAIM = {"prediction": "gradient-input", "target": "gradient-target"}


def resolve(path, record_name):
    """MODULE:ATTR -> the object, or a one-line ImplementationLoadError."""
    module_name, _, attribute_path = path.partition(":")
    try:
        target = importlib.import_module(module_name)
    except Exception as error:
        raise ImplementationLoadError(
            f"--impl {record_name}: cannot import {module_name!r} "
            f"({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None
    for part in attribute_path.split("."):
        if not hasattr(target, part):
            raise ImplementationLoadError(
                f"--impl {record_name}: {module_name!r} has no attribute {attribute_path!r}")
        target = getattr(target, part)
    return target


def apply_environment(record):
    """Environment a library reads at import time (KERAS_BACKEND), before importing it."""
    for key, value in ((record.setup or {}).get("environment") or {}).items():
        current = os.environ.get(key)
        if current is not None and current != value:
            raise ImplementationLoadError(
                f"--impl {record.name}: needs {key}={value}, but the environment has "
                f"{key}={current}; run it in a separate process or tox env")
        os.environ[key] = value


def prepare_libraries(record):
    """The record's array bridge, after what must precede importing its library: the
    environment (KERAS_BACKEND) and the array library's switches (jax's 64-bit mode)."""
    apply_environment(record)
    array_bridge = bridge(record.arrays)
    try:
        array_bridge.setup(record.setup or {})
    except ImportError as error:
        raise ImplementationLoadError(
            f"--impl {record.name}: {record.arrays} does not import ({error})") from None
    shared = os.environ.get(COMPILED_AHEAD_VARIABLE)
    own = os.environ.get(COMPILED_HERE_VARIABLE)
    if shared and own and compiles_ahead(record, array_bridge):
        # Written in a folder of its own, which holds links to the shared programs (those
        # others compile during the run too, linked in before each call); what a call
        # compiled is shared once it returned, when none can be half written.
        _share_programs(array_bridge, shared, own)
    return array_bridge


def _share_programs(array_bridge, shared, own):
    global _shared_programs, _sharing_bridge
    scope = array_bridge.compilation_scope()
    try:
        _shared_programs = program_store.Mirror(os.path.join(shared, scope),
                                                os.path.join(own, scope))
    except OSError:
        _shared_programs = None
        return   # an unwritable cache folder: every program compiled here
    _sharing_bridge = array_bridge
    array_bridge.share_compilations(_shared_programs.own, writes=True)


def compile_apart(name):
    """In a child forked from the call worker that calls beside the worker's other child (an
    ahead child, engine.calls_ahead): what it compiles goes into a folder of its own, `name`
    beside the worker's, and is shared from there as the worker's is. In one folder, each
    would share the other's entries half written (a Mirror shares what appeared in its own
    folder during its own call)."""
    if _shared_programs is None:
        return
    own = os.environ[COMPILED_HERE_VARIABLE]
    _share_programs(_sharing_bridge, os.path.dirname(_shared_programs.shared),
                    os.path.join(os.path.dirname(own), f"{os.path.basename(own)}-{name}"))


# This process's view of the shared compiled programs (prepare_libraries), or None; the
# array bridge sharing them.
_shared_programs = None
_sharing_bridge = None


def _sharing_programs():
    """Around a call that may compile: the shared programs' Mirror, or nothing to do."""
    return _shared_programs if _shared_programs is not None else contextlib.nullcontext()


def compiles_ahead(record, array_bridge):
    """Whether a run compiles the programs of `record`'s calls ahead of them, in another
    process: its library compiles each new shape, and the bridge can share what it compiled."""
    return bool(record.jit and record.compiles_per_shape) \
        and array_bridge.can_share_compilations()


def _normalised(values, log_space, dtype):
    """Rows (last axis) that sum to 1, within what rounding to `dtype` allows."""
    from klconform.dtypes import UNIT_ROUNDOFF

    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.size == 0 or not np.all(np.isfinite(values)):
        return values.ndim > 0 and values.size > 0 and not np.any(np.isnan(values))
    with np.errstate(all="ignore"):
        mass = np.sum(np.exp(values) if log_space else values, axis=-1)
    width = values.shape[-1]
    return bool(np.all(np.abs(mass - 1.0) <= 4 * width * UNIT_ROUNDOFF[dtype] + 1e-12))


def describes_without_importing(record):
    """Whether the adapter of `record` answers capabilities, plans, snippets and its version
    from the record alone: a function or loss class whose library the record names (the
    version is the installed distribution's) and that needs no probe of a GPU stack."""
    return not record.adapter and not record.requires_gpu and bool(record.library)


def _check_installed(record, array_bridge):
    """ModuleNotFoundError, as importing would raise it, for a module of the record that is
    not installed; found without importing it."""
    targets = [record.function, record.loss_class, (record.log_target or {}).get("function")]
    for module in (array_bridge.name, *(target.split(":")[0] for target in targets if target)):
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is None:
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)


class ConventionAdapter(Adapter):
    def __init__(self, record, function=None, describe_only=False, described=None):
        """`describe_only` (where describes_without_importing(record)): an adapter that is
        only asked what it can do, its calls made by another process, imports nothing of
        the library (jax 1.6 s, keras 2.8 s, tensorflow more, each run). `described`: the
        same, from what the process that imported it said (adapters.described)."""
        self.record = record
        self.name = record.name
        self.function = function
        self.loss_class = None
        self.log_target_function = None
        self._callers = {}
        self.describe_only = describe_only or described is not None
        # A GPU-only library is expected not to import on a machine without its GPU stack:
        # every call is then unsupported, with the reason, instead of the run failing.
        self.unavailable = None
        self._function_module = None
        if self.describe_only:
            apply_environment(record)
            self.bridge = bridge(record.arrays)
            if described is None:
                _check_installed(record, self.bridge)
            else:   # the process that described it has imported it
                self._function_module = described["function_module"]
        else:
            self.bridge = prepare_libraries(record)
            try:
                self._resolve_targets(function)
            except ImplementationLoadError as error:
                if not record.requires_gpu:
                    raise
                self.unavailable = f"a machine without its GPU stack installed ({error})"
        self.capabilities = self._capabilities()

    def _resolve_targets(self, function):
        record = self.record
        if function is None and record.function:
            self.function = resolve(record.function, record.name)
        if function is None and record.loss_class:
            self.loss_class = resolve(record.loss_class, record.name)
        log_target = record.log_target or {}
        if "function" in log_target:
            self.log_target_function = resolve(log_target["function"], record.name)

    # -- what the record allows -------------------------------------------------------------

    def _capabilities(self):
        record = self.record
        finest_name, finest = record.finest_output()
        _, scalar = record.scalar_output()
        reductions, composed = set(), set()
        for canonical, meaning in CANONICAL_MEANING.items():
            if meaning in record.native_meanings.values():
                reductions.add(canonical)
            elif finest == "elementwise" or (canonical != "none"
                                             and (finest == "rows" or scalar is not None)):
                reductions.add(canonical)
                composed.add(canonical)
        by_device = record.dtypes_by_device
        spaces = record.spaces
        return Capabilities(
            reductions=frozenset(reductions),
            log_target=bool(record.log_target) or spaces["target"] in LOG_SPACES,
            default_reduction=record.default_meaning == CANONICAL_MEANING["mean"],
            dtypes=frozenset(by_device.get("cpu", ())) | frozenset().union(
                *(set(d) for d in by_device.values())),
            module_form=bool(record.loss_class),
            autograd=record.autograd not in (None, "none"),
            devices=tuple(by_device),
            composed_reductions=frozenset(composed),
            # A (batch, seq, vocab)-only loss takes lower ranks lifted (adapters.native_form).
            ranks=rank_range(record),
            distillation=frozenset(
                feature for feature, declared in (
                    ("temperature", record.temperature), ("mask", record.mask),
                    ("logits", "logits" in spaces.values())) if declared),
            fixed_shapes=bool(record.compiles_per_shape),
        )

    def version(self):
        """The version of the library the record names, else of the distribution the
        function's module belongs to; never the array library's for someone else's code,
        and a missing library is "not installed", not its array library's version."""
        if self.record.library:
            try:
                return metadata.version(self.record.library)
            except metadata.PackageNotFoundError:
                return "not installed"
        function = self.function or self.loss_class
        module = getattr(function, "__module__", None) or self._function_module
        top = (module or "").split(".")[0]
        for name in metadata.packages_distributions().get(top, []) if top else []:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return "unknown (not an installed distribution)"

    def describe(self):
        return f"{self.record.description} [{self.record.convention_summary()}]"

    def plan(self, call: Call) -> Plan:
        record = self.record
        reason = self.unavailable or capability_gap(self.capabilities, call)
        device = call.device.split(":")[0]
        if reason is None and record.requires_gpu and device not in self.bridge.devices():
            reason = (f"device {device}: absent on this machine (it has "
                      f"{', '.join(self.bridge.devices())})")
        if reason is None and call.dtype not in record.dtypes_by_device.get(device, ()):
            reason = f"dtype {call.dtype} on {device}"
        if reason is None and call.legacy:
            reason = "legacy size_average/reduce arguments"
        if reason is None and call.reduction is None and not record.reduction \
                and record.default_meaning != CANONICAL_MEANING["mean"]:
            reason = (f"calls without a reduction argument (it returns "
                      f"{MEANING_TEXT[record.default_meaning]}, not the canonical 'mean')")
        if reason is None and call.reduction is None and record.reduction \
                and record.default_meaning != CANONICAL_MEANING["mean"]:
            default = record.reduction.get("default")
            reason = ("calls without a reduction argument" if default is None else
                      f"calls without a reduction argument (its default {default!r} is "
                      f"{MEANING_TEXT[record.default_meaning]}, not the canonical 'mean')")
        if reason is None and call.reduction not in (None, *REDUCTIONS) and not record.reduction:
            reason = "a reduction argument"
        form = native_form(record, np.shape(call.input))
        temperature = temperature_for(record, call.temperature)
        if reason is None and form is None:
            reason = f"rank-{np.ndim(call.input)} inputs"
        if reason is None and temperature.unsupported:
            reason = temperature.unsupported
        route = self._route(call, form) if reason is None else None
        if reason is None and route is None:
            reason = f"reduction {call.reduction!r} on {np.shape(call.input)} (every position " \
                     f"masked: its output cannot be rescaled)"
        if reason:
            return Plan(unsupported=reason)
        prediction_space = self._prediction_space(call)
        target_space = self._target_space(call)
        if prediction_space == "logits" and not _normalised(call.input, True, call.dtype):
            return Plan(unsupported="input rows that are not normalised log-probabilities "
                                    "(a logits argument is normalised by the library)")
        if target_space == "logits" and not _normalised(call.target, call.log_target,
                                                       call.dtype):
            return Plan(unsupported="target rows that are not normalised (a logits argument "
                                    "is normalised by the library)")
        if prediction_space == "probabilities" and call.dtype_of("input") in UNIT_ROUNDOFF:
            dtype = call.dtype_of("input")
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                converted = round_to(np.exp(np.asarray(call.input, dtype=np.float64)), dtype)
                mass = np.exp(call.target) if call.log_target else np.asarray(call.target)
            finite = np.isfinite(call.input)
            # Below the smallest normal number a flush-to-zero library (XLA) sees Q = 0; an
            # answer there says what klconform's conversion did, not what the library does.
            lost = finite & ((converted < SMALLEST_NORMAL[dtype]) | np.isinf(converted))
            try:
                lost = lost & ~(mass == 0)
            except ValueError:  # shapes that do not broadcast: a probe; any loss counts
                pass
            if np.any(lost):
                return Plan(unsupported=f"inputs whose probabilities exp(log Q) are not normal "
                                        f"{dtype} numbers where P > 0 (the library would be "
                                        f"given Q = 0, a subnormal or inf)")
        unjudged = tuple((GRADIENT_CLAIM[role], f"the function does not differentiate its "
                                                f"{role} (declared: no_gradient)")
                         for role in record.no_gradient or ())
        spaces = {"input": prediction_space, "target": target_space}
        logits = tuple(argument for argument, space in spaces.items() if space == "logits")
        conversions = self._conversions(call)
        if not temperature.exact:
            conversions += tuple(f"temperature: {argument} logits times {temperature.value:g}"
                                 for argument in logits)
        return Plan(composed=self._route_text(call, route), conversions=conversions,
                    unjudged=unjudged, scale=temperature.scale, normalised=logits,
                    logits_gradients=logits, **self._divisors(call, form, route))

    def _divisors(self, call, form, route):
        """What a rescaled scalar output declares it divides by, and the alternatives."""
        name, how, _ = route
        meaning = self.record.native_meanings.get(name)
        # A token mean read as it is (its divisor coincides with the canonical one, as with
        # one row kept) declares its divisor as much as a rescaled one.
        if how != "rescaled" and not (how == "native" and meaning == "mean-rows"):
            return {}
        kept = None if call.mask is None else int(np.sum(call.mask))
        declared = divisor(meaning, form.native_shape, self.record.class_axis, kept)
        shape = form.native_shape
        candidates = {}
        if kept is not None:
            # First: on (N, C) rows the padded count is size(0) too, and the mask is the
            # likelier slip of a function that takes one.
            candidates[PADDED_ROWS] = divisor("mean-rows", shape, self.record.class_axis)
        candidates.update({
            "size(0)": divisor("mean-batch", shape),
            "number of rows": divisor("mean-rows", shape, self.record.class_axis, kept),
            "number of elements": divisor("mean-elements", shape), "nothing": 1})
        alternatives = tuple((label, value) for label, value in candidates.items()
                             if value and value != declared)
        return {"declared_meaning": meaning, "declared_divisor": declared,
                "divisors": alternatives}

    def _route(self, call, form):
        """(native reduction name, how, factor) for the call's reduction; None if it cannot be
        had. `how`: 'native' (the library computes it), 'finest' (klconform sums the
        elementwise or per-row output, times `factor`), 'rescaled' (a scalar output times
        `factor`, the ratio of its divisor to the canonical one)."""
        record = self.record
        if call.reduction not in REDUCTIONS:
            return call.reduction, "native", 1.0
        shape = np.shape(call.input)
        kept = None if call.mask is None else int(np.sum(call.mask))
        name = record.native_for(call.reduction, shape, form.native_shape, kept)
        if name is not None:
            return name, "native", 1.0
        wanted = CANONICAL_MEANING[call.reduction]
        finest_name, finest = record.finest_output()
        if finest == "elementwise" or (finest == "rows" and wanted in SCALAR_MEANINGS):
            with np.errstate(divide="ignore"):
                # An empty batch divides by 0: nan, as the canonical reduction gives.
                return finest_name, "finest", np.float64(1.0) / divisor(wanted, shape)
        scalar_name, scalar = record.scalar_output()
        if scalar is None or wanted not in SCALAR_MEANINGS:
            return None
        native_divisor = divisor(scalar, form.native_shape, record.class_axis, kept)
        if native_divisor == 0 or divisor(wanted, shape) == 0:
            return None
        return scalar_name, "rescaled", native_divisor / divisor(wanted, shape)

    def _route_text(self, call, route):
        name, how, _ = route
        if how == "native":
            return None
        meaning = self.record.native_meanings[name]
        source = "its output" if name == NO_ARGUMENT else f"its {name!r} output"
        if how == "finest":
            return (f"{call.reduction!r} is computed by klconform from {source} "
                    f"({MEANING_TEXT[meaning]})")
        return (f"{call.reduction!r} is computed by klconform from {source} "
                f"({MEANING_TEXT[meaning]}) times the ratio of the two divisors")

    def _prediction_space(self, call):
        """The prediction's space in the form `call` selects: a log_target switch may move
        the prediction into log space as well."""
        if call.log_target:
            return (self.record.log_target or {}).get("prediction",
                                                      self.record.spaces["prediction"])
        return self.record.spaces["prediction"]

    def _target_space(self, call):
        """The target's space in the form `call` selects: a log_target switch takes it in a
        log space (log-probabilities, or logits where that form normalises it)."""
        target = self.record.spaces["target"]
        if target in LOG_SPACES or not call.log_target:
            return target
        return (self.record.log_target or {}).get("target", "log-probabilities")

    def _conversions(self, call):
        spaces = self.record.spaces
        conversions = []
        if self._prediction_space(call) == "probabilities":
            conversions.append("prediction: exp of the log-probabilities")
        if spaces["target"] in LOG_SPACES and not call.log_target:
            conversions.append("target: log of the probabilities")
        return tuple(conversions)

    # -- making the call ------------------------------------------------------------------

    def _native_arrays(self, call):
        """(prediction, target) as float64 in the library's spaces, before rounding, with
        logits times the call's temperature; still in the canonical layout."""
        spaces = self.record.spaces
        prediction = np.asarray(call.input, dtype=np.float64)
        target = np.asarray(call.target, dtype=np.float64)
        temperature = temperature_for(self.record, call.temperature).value
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self._prediction_space(call) == "probabilities":
                prediction = np.exp(prediction)
            if spaces["target"] in LOG_SPACES and not call.log_target:
                target = np.log(target)
            if temperature is not None:
                # softmax(T log Q / T) = Q: the tempered distributions are the case's own.
                if self._prediction_space(call) == "logits":
                    prediction = prediction * temperature
                if self._target_space(call) == "logits":
                    target = target * temperature
        return prediction, target

    def _staged(self, call):
        """(form, route, prediction, target): the arguments as the library's arrays."""
        if self.describe_only:
            refuse_call_when_described(self.name)
        form = native_form(self.record, np.shape(call.input))
        route = self._route(call, form)
        prediction64, target64 = self._native_arrays(call)
        prediction = self.bridge.from_numpy(form.to_native(prediction64),
                                            call.dtype_of("input"), call.device)
        target = self.bridge.from_numpy(form.to_native(target64), call.dtype_of("target"),
                                        call.device)
        return form, route, prediction, target

    def _call_function(self, call, form, route):
        """A function of (prediction, target) native arrays that makes the native call."""
        record = self.record
        keywords = dict(record.call or {})
        function = self.function
        log_target = record.log_target or {}
        if call.log_target is not None and "keyword" in log_target:
            keywords[log_target["keyword"]] = bool(call.log_target)
        if call.log_target and "function" in log_target:
            function = self.log_target_function
        reduction_name = None
        if call.reduction is not None and record.reduction:
            reduction_name = route[0]
            if reduction_name == NO_ARGUMENT:
                reduction_name = None
        axis = record.axis or {}
        if "keyword" in axis:
            keywords[axis["keyword"]] = axis.get("value", -1)
        temperature = record.temperature or {}
        if "keyword" in temperature:
            keywords[temperature["keyword"]] = temperature_for(record, call.temperature).value
        if record.mask:
            mask = np.ones(form.canonical_shape[:-1], dtype=bool) if call.mask is None \
                else np.asarray(call.mask, dtype=bool)
            values, dtype = mask_argument(record.mask, form.mask_to_native(mask), call.dtype)
            keywords[record.mask["keyword"]] = self.bridge.from_numpy(values, dtype,
                                                                      call.device)
        if reduction_name is not None:
            keywords[record.reduction["keyword"]] = reduction_name
        caller = self._caller(function)
        if record.jit:
            return caller.bind(keywords)
        return lambda prediction, target: caller(prediction, target, **keywords)

    def _caller(self, function):
        """`function` (or the loss class, built and called) as a function of (prediction,
        target, **keywords), the arguments put in the record's order; made once per function,
        so that a compiled one keeps its compiled programs from call to call."""
        caller = self._callers.get(function)
        if caller is None:
            order = self.record.arguments
            loss_class = self.loss_class

            def call(prediction, target, **keywords):
                by_role = {"prediction": prediction, "target": target}
                positional = [by_role[role] for role in order]
                if loss_class is not None:
                    return loss_class(**keywords)(*positional)
                return function(*positional, **keywords)

            caller = self.bridge.compiled(call) if self.record.jit else call
            self._callers[function] = caller
        return caller

    def _to_canonical(self, value, form, route):
        """The native result as the canonical reduction's value: moved back to the canonical
        layout, or composed as the route says."""
        name, how, factor = route
        meaning = self.record.native_meanings.get(name)
        if how == "native":
            return form.elementwise_back(value) if meaning == "elementwise" else value
        if how == "rescaled":
            if np.shape(value) != ():
                raise ImplementationResultError(
                    f"its {MEANING_TEXT[meaning]} output has shape {np.shape(value)}, "
                    f"expected a scalar (as its record says)")
            with np.errstate(all="ignore"):
                return np.asarray(np.float64(value) * factor)
        native = form.native_shape
        rows = tuple(size for index, size in enumerate(native) if index != form.axis)
        wanted = native if meaning == "elementwise" else rows
        if np.shape(value) != tuple(wanted):
            raise ImplementationResultError(
                f"its {MEANING_TEXT[meaning]} output has shape {np.shape(value)}, expected "
                f"{tuple(wanted)} for a {native} input (as its record says)")
        with np.errstate(all="ignore"):
            return np.asarray(np.sum(value, dtype=np.float64) * factor)

    def compute(self, call: Call) -> Observation:
        plan = self.plan(call)
        if plan.unsupported:
            raise ImplementationResultError(f"unsupported call: {plan.unsupported}")
        form, route, prediction, target = self._staged(call)
        with _sharing_programs():
            result = self._call_function(call, form, route)(prediction, target)
        value, dtype, shape = self.bridge.to_numpy(result)
        value = self._to_canonical(value, form, route)
        moved = plan.composed or not form.identity
        return Observation(value, dtype, tuple(np.shape(value)) if moved else shape)

    def gradients(self, call: Call):
        plan = self.plan(call)
        if plan.unsupported:
            raise ImplementationResultError(f"unsupported call: {plan.unsupported}")
        form, route, prediction, target = self._staged(call)
        prediction64, _ = self._native_arrays(call)
        with _sharing_programs():
            grad_prediction, grad_target = self.bridge.gradients(
                self._call_function(call, form, route), prediction, target)
        scale = 1.0 if route[1] == "native" else route[2]
        temperature = temperature_for(self.record, call.temperature).value or 1.0
        spaces = self.record.spaces
        with np.errstate(all="ignore"):
            # Chain rule back to the canonical arguments (log Q, and P or log P).
            if grad_prediction is not None:
                grad_prediction = form.elementwise_back(grad_prediction) * scale
                if self._prediction_space(call) == "probabilities":
                    # The library saw Q rounded to the dtype: the chain rule uses that Q.
                    grad_prediction = grad_prediction * round_to(prediction64,
                                                                 call.dtype_of("input"))
                elif self._prediction_space(call) == "logits":
                    grad_prediction = grad_prediction * temperature
            if grad_target is not None:
                grad_target = form.elementwise_back(grad_target) * scale
                if self._target_space(call) == "logits":
                    grad_target = grad_target * temperature
                if spaces["target"] in LOG_SPACES and not call.log_target:
                    grad_target = grad_target / np.asarray(call.target, dtype=np.float64)
        return grad_prediction, grad_target

    @staticmethod
    def _distillation_arguments(call):
        """The temperature and mask of a call, as Call keyword arguments in source."""
        text = ""
        if call.temperature is not None:
            text += f", temperature={call.temperature!r}"
        if call.mask is not None:
            text += f", mask=np.array({np.asarray(call.mask, dtype=bool).tolist()!r})"
        return text

    def snippet(self, call: Call) -> str:
        record = self.record
        plan = self.plan(call)
        target_name = record.function or record.loss_class
        lines = [
            "# klconform's own float64 conversions to the library's convention:",
            "from klconform.adapters import load_adapter",
            f"adapter = load_adapter({self.name!r}"
            + (")" if record.source.startswith("built-in") else
               f", convention={record.source!r})"),
            f"call = Call(input_values, target_values, dtype={call.dtype!r}, "
            f"reduction={call.reduction!r}, log_target={call.log_target!r}, "
            f"device={call.device!r}{self._distillation_arguments(call)})",
            "print(adapter.run(call))",
            f"# which calls {target_name} with {', '.join(record.arguments)} "
            f"({self._prediction_space(call)} prediction, "
            f"{self._target_space(call)} target)",
        ]
        if plan.composed:
            lines.append(f"# {plan.composed}")
        lines.insert(1, "from klconform.adapters.base import Call")
        return "\n".join(lines) + "\n"
