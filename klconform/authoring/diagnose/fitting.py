"""Scoring readings against what the function returned, and choosing the one that fits.

The readings are tried in stages, plainest first: a KL at the temperature the signature
gives (or none), then a temperature fixed inside, then what is not a KL. A stage's reading
fits when its residual is within the probing dtype's tolerance; one that fits only at
float32's accuracy is the reading with a precision finding; where nothing fits, a single
reading within NEAR_FIT is the reading with an epsilon or clip finding. Two readings that fit
equally are reported, never guessed between.
"""

import math

import numpy as np

from klconform.authoring.diagnose.evidence import Diagnosis, show
from klconform.authoring.diagnose.hypotheses import (
    FAMILY_TEXT,
    FIXED_TEMPERATURES,
    JSD_BETAS,
    KL,
    MEANINGS,
    MISTAKES,
    readings,
    residual,
)
from klconform.authoring.diagnose.probes import BASE_RANK

# Relative residual under which a reading fits, by the dtype the result is judged at. A
# float64 computation is exact to ~1e-15 on the probes; 1e-9 leaves room for sums and logs
# and none for a float32 computation inside (~1e-7).
FIT_TOLERANCE = {"float64": 1e-9, "float32": 1e-3}
# The designed probes put every wrong reading further off than this.
DESIGNED_SEPARATION = 1e-2
# Where no reading fits, one that alone comes this close is the convention, and its residual
# a finding (an epsilon or a clip on every input), not a reason to give up.
NEAR_FIT = 1e-2
# A class axis other than these needs probes normalised along it (not made: rare).
AXES = (-1, 1)
# Far outside NEAR_FIT: a screen that only drops readings nothing could call near.
SCREEN = 0.5


def meaning_residuals(observations, hypothesis, meanings=MEANINGS):
    """meaning -> worst residual of one reading over the informative observations (inf where
    none was): a probe the reading does not apply to, or whose terms are not finite, says
    nothing."""
    worst = dict.fromkeys(meanings, 0.0)
    informative, accepted, explained = 0, set(), set()
    for probe, outcome in observations:
        if outcome.ok and -probe.rank <= hypothesis.axis < probe.rank:
            accepted.add(probe.rank)
        if not outcome.ok or not hypothesis.applies_to(probe):
            continue
        terms = hypothesis.terms(probe.first, probe.second)
        if not np.all(np.isfinite(terms)):
            continue
        informative += 1
        explained.add(probe.rank)
        for meaning in meanings:
            worst[meaning] = max(worst[meaning], residual(
                outcome.value, hypothesis.reduce(terms, meaning, probe.kept)))
    # A reading must explain every rank the function took where it has that axis: one whose
    # own probes the function refused there (a mask along another axis) explains nothing.
    if not informative or accepted - explained:
        return dict.fromkeys(meanings, math.inf)
    return worst


def fitting_meanings(observations, hypothesis, tolerance):
    """meaning -> residual, for the meanings within the tolerance."""
    return {meaning: error for meaning, error in
            meaning_residuals(observations, hypothesis).items() if error <= tolerance}


def best_residual(variants, hypothesis):
    """The best-explained output decides: one buggy reduction must not hide the arguments."""
    return min((min(meaning_residuals(outcomes, hypothesis).values())
                for outcomes in variants.values() if any(o.ok for _, o in outcomes)),
               default=math.inf)


def stages(signature, probe_temperature):
    """(label, readings) to try in order."""
    axes = (signature.axis_default,) if signature.axis else AXES
    if signature.temperature:
        keyword = [(probe_temperature, True), (probe_temperature, False)]
        yield "a KL at the temperature passed", readings(axes, keyword)
        yield "a KL that ignores its temperature", readings(axes)
    else:
        yield "a KL", readings(axes)
        yield "a KL at a temperature fixed inside", readings(
            axes, [(t, scaled) for t in FIXED_TEMPERATURES for scaled in (True, False)])
    temperatures = [(probe_temperature, s) for s in (True, False)] if signature.temperature \
        else [(1.0, False)]
    mistakes = []
    if signature.mask:
        mistakes += ["mask-value", "mask-divisor", "mask-ignored"]
    if signature.temperature:
        mistakes += ["student-only-T", "target-only-T"]
    if mistakes:
        yield "a known mistake", [h for mistake in mistakes
                                  for h in readings(axes, temperatures, mistake=mistake)]
    if signature.axis:
        yield "a known mistake", readings(
            tuple(axis for axis in AXES if axis != signature.axis_default), temperatures,
            mistake="axis-ignored")
    betas = (signature.beta_default,) if signature.beta_default not in (None, 0.0, 1.0) \
        else JSD_BETAS
    yield "not a KL", readings(axes, temperatures, "cross-entropy") + readings(
        axes, temperatures, "jsd", betas)


def _agrees(hypothesis, assume):
    return all(hypothesis.assumptions()[key] == value for key, value in assume.items())


def _same_reading(hypothesis):
    """Readings equal on every probe the function accepted differ only in their axis (a 2-D
    only function's axis 1 is its last): the first in AXES order stands for them."""
    return (hypothesis.order, hypothesis.spaces, hypothesis.temperature, hypothesis.scaled,
            hypothesis.family, hypothesis.beta)


def _distinct(hypotheses):
    kept = {}
    for hypothesis in sorted(hypotheses, key=lambda h: AXES.index(h.axis)
                             if h.axis in AXES else len(AXES)):
        kept.setdefault(_same_reading(hypothesis), hypothesis)
    return sorted(kept.values(), key=hypotheses.index)


# What an assumption the function contradicts breaks.
ASSUMPTION_CLAIM = {"first": "roles", "prediction": "roles", "target": "roles",
                    "axis": "class-axis", "scaled": "temperature-scaling"}


def infer_arguments(variants, tolerance, assume, diagnosis, signature, probe_temperature):
    """(reading, tolerance the rest is judged at) or (None, tolerance) where none is chosen;
    a reading that is not a KL is named on the diagnosis. What `assume` states and the
    function contradicts (the only reading that fits says otherwise) is a finding on the
    claim it breaks; the record then states the assumption (diagnosis.assumed), so that the
    run fails on it."""
    trial = Diagnosis(diagnosis.function)
    reading_assumed = {key: value for key, value in assume.items() if key in ASSUMPTION_CLAIM}
    chosen, judged = _infer_arguments(variants, tolerance, reading_assumed, trial, signature,
                                      probe_temperature)
    if chosen is None and reading_assumed:
        free = Diagnosis(diagnosis.function)
        unassumed, free_judged = _infer_arguments(variants, tolerance, {}, free, signature,
                                                  probe_temperature)
        if unassumed is not None:
            trial, chosen, judged = free, unassumed, free_judged
            for key, value in reading_assumed.items():
                found = unassumed.assumptions()[key]
                if found != value:
                    trial.find(f"--assume {key}={value}, but the function computes {key}="
                               f"{found} ({unassumed.describe()})", ASSUMPTION_CLAIM[key])
                    trial.assumed[key] = value
    diagnosis.absorb(trial)
    return chosen, judged


def _infer_arguments(variants, tolerance, assume, diagnosis, signature, probe_temperature):
    scored_all, lines = [], []
    accepted = sorted({probe.rank for probe, outcome in variants[None] if outcome.ok},
                      key=lambda rank: (rank != BASE_RANK, rank))
    screen = {None: [(probe, outcome) for probe, outcome in variants[None]
                     if accepted and probe.rank == accepted[0]]}
    for label, candidates in stages(signature, probe_temperature):
        # Screened on the base rank's plain calls first: a reading that misses there by more
        # than SCREEN is not scored on every variant (most of a diagnosis's time otherwise).
        screened = [(best_residual(screen, h), index, h) for index, h in enumerate(candidates)]
        scored = sorted(((best_residual(variants, h) if error <= SCREEN else error, index, h)
                         for error, index, h in screened), key=lambda item: item[:2])
        scored = [(error, h) for error, _, h in scored]
        scored_all += scored
        nearest = ", ".join(f"{h.describe()} {show(error)}" for error, h in scored[:3])
        lines.append(f"{label}: nearest {nearest}")
        for limit, tier in ((tolerance, "exact"), (FIT_TOLERANCE["float32"], "float32")):
            if tier == "float32" and limit <= tolerance:
                continue
            fitting = _distinct([h for error, h in scored if error <= limit and _agrees(h, assume)])
            if not fitting:
                continue
            chosen = _choose(fitting, scored, assume, limit, diagnosis, lines)
            if chosen is None:
                return None, tolerance
            worst = next(error for error, h in scored if h == chosen)
            if tier == "float32":
                # Whether that is float32 inside or an epsilon, the edge probes tell.
                diagnosis.imprecise = worst
                return _named(chosen, diagnosis, max(tolerance, 10 * worst))
            return _named(chosen, diagnosis, tolerance)
    scored_all.sort(key=lambda item: item[0])
    near = _distinct([h for error, h in scored_all if error <= NEAR_FIT and _agrees(h, assume)])
    if len(near) == 1:
        worst = next(error for error, h in scored_all if h == near[0])
        diagnosis.imprecise = worst
        diagnosis.confidence = "medium (the nearest reading, not an exact fit)"
        diagnosis.note("arguments", f"{near[0].describe()}, nearly", lines)
        return _named(near[0], diagnosis, max(tolerance, 10 * worst))
    diagnosis.note("arguments", "no reading fits", lines)
    nearest = "; ".join(f"{h.describe()}: {show(e)}" for e, h in scored_all[:4])
    diagnosis.ambiguities.append(
        f"no reading explains the outputs (nearest: {nearest}): not a KL of these arguments, "
        "or a bug in every output" + _settle_hint(signature))
    return None, tolerance


def _settle_hint(signature):
    hints = [f"--call {name}=VALUE" for name in signature.required]
    if signature.temperature and signature.temperature_default is None:
        hints.append(f"--call {signature.temperature}=VALUE")
    return f"; try {' or '.join(hints)}" if hints else ""


def _choose(fitting, scored, assume, limit, diagnosis, lines):
    if len(fitting) == 1 or len({h.family for h in fitting}) == 1 and fitting[0].family != KL:
        chosen = fitting[0]
        runner_up = next((error for error, h in scored if _same_reading(h) != _same_reading(chosen)
                          and _agrees(h, assume)), math.inf)
        best = next(error for error, h in scored if h == chosen)
        clear = min(1e3 * limit, DESIGNED_SEPARATION)
        diagnosis.confidence = ("settled by --assume" if assume else
                                ("high" if runner_up > clear else "low")
                                + f" (next reading residual {show(runner_up)}, "
                                  f"{runner_up / max(best, 1e-16):.1e} x the best)")
        diagnosis.note("arguments", chosen.describe(), lines)
        return chosen
    diagnosis.note("arguments", "ambiguous", lines)
    options = sorted({f"{key}={value}" for h in fitting for key, value in h.assumptions().items()
                      if len({g.assumptions()[key] for g in fitting}) > 1})
    diagnosis.ambiguities.append(
        "these fit equally: " + "; ".join(h.describe() for h in fitting)
        + f"; the probes cannot tell them apart: pass one of --assume {', '.join(options)}")
    return None


def _named(chosen, diagnosis, tolerance):
    """A reading that is not a KL is named; a known mistake is a finding on its claim. The
    reading keeps its mistake (the outputs are judged by it); the record, built from the
    order, spaces, keyword axis, temperature and mask, states the reading without it."""
    if chosen.family != KL:
        diagnosis.not_a_kl = f"{FAMILY_TEXT[chosen.family]}: {chosen.describe()}"
    if chosen.mistake:
        text, claim = MISTAKES[chosen.mistake]
        diagnosis.find(f"looks like: {text} ({chosen.describe()})", claim)
    return chosen, tolerance
