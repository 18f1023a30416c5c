"""What an unknown function might compute, and what each reading predicts for a probe.

A hypothesis is a complete reading of the function: which positional argument is the
prediction, the space each is in, the class axis, the temperature (and whether the result is
multiplied by T**2), and the quantity: a KL, or what people write when they mean one (the
cross-entropy, which is KL + H(P), and the generalised Jensen-Shannon divergence). Its
prediction comes from the float64 oracle's pointwise terms and the record's meanings, so a
diagnosed record means what the run will check.
"""

import math
from dataclasses import dataclass
from itertools import product

import numpy as np

from klconform.oracle.float64 import pointwise
from klconform.spec.conventions import Meaning, Role, Space, divisor

ROLES = tuple(Role)
SPACES = tuple(Space)
MEANINGS = tuple(Meaning)
KL, CROSS_ENTROPY, JSD = "kl", "cross-entropy", "jsd"
FAMILY_TEXT = {
    KL: "a KL divergence",
    CROSS_ENTROPY: "the cross-entropy -sum P log Q (= KL(P||Q) + H(P)), not a KL",
    JSD: "a generalised Jensen-Shannon divergence, not a KL",
}
# Temperatures tried when the function takes none as a keyword but may fix one inside.
FIXED_TEMPERATURES = (2.0, 3.0, 4.0, 5.0, 10.0, 0.5)
# JSD weights tried when the function takes no `beta` keyword.
JSD_BETAS = (0.5, 0.1, 0.9)


# Known bugs of distillation code, as readings: what each changes, and the claim the run
# fails on it. The record states the reading without the mistake.
MISTAKES = {
    "mask-value": ("masked rows are summed (the mask only divides)", "mask-excludes-value"),
    "mask-divisor": ("masked rows are counted by the divisor", "mask-excludes-divisor"),
    "mask-ignored": ("the mask is ignored", "mask-excludes-value"),
    "student-only-T": ("only the prediction's logits are divided by T",
                       "temperature-scaling"),
    "target-only-T": ("only the target's logits are divided by T", "temperature-scaling"),
    "axis-ignored": ("the class-axis keyword is ignored", "class-axis"),
}


def log_softmax(values, axis):
    shifted = values - np.max(values, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@dataclass(frozen=True)
class Hypothesis:
    order: tuple                 # roles of the first and second positional arguments
    spaces: tuple                # (prediction space, target space)
    axis: int = -1               # the class axis
    temperature: float = 1.0     # logits are divided by it
    scaled: bool = False         # the result is multiplied by T**2
    family: str = KL
    beta: float = None           # the JSD's weight on the target
    mistake: str = None          # a known bug (MISTAKES) this reading has

    @property
    def tempered(self):
        return self.temperature != 1.0 and Space.LOGITS in self.spaces

    def _log(self, values, space, role):
        with np.errstate(all="ignore"):
            if space == Space.PROBABILITIES:
                return np.log(values)
            if space == Space.LOG_PROBABILITIES:
                return values
            untempered = {"student-only-T": Role.TARGET, "target-only-T": Role.PREDICTION}
            temperature = 1.0 if untempered.get(self.mistake) == role else self.temperature
            return log_softmax(values / temperature, self.axis)

    def terms(self, first, second):
        """The pointwise terms of the arrays read this way, in float64."""
        by_role = dict(zip(self.order, (first, second), strict=True))
        prediction_space, target_space = self.spaces
        log_q = self._log(by_role[Role.PREDICTION], prediction_space, Role.PREDICTION)
        target = by_role[Role.TARGET]
        with np.errstate(all="ignore"):
            if self.family == KL:
                if target_space == Space.PROBABILITIES:
                    terms = pointwise(log_q, target)
                else:
                    # A target of log 0 = -inf is P = 0: it contributes 0, as in the run.
                    log_p = self._log(target, target_space, Role.TARGET)
                    terms = np.where(log_p == -np.inf, 0.0,
                                     pointwise(log_q, log_p, log_target=True))
            else:
                log_p = self._log(target, target_space, Role.TARGET)
                p, q = np.exp(log_p), np.exp(log_q)
                if self.family == CROSS_ENTROPY:
                    terms = np.where(p > 0, -p * log_q, 0.0)
                else:
                    log_m = np.log(self.beta * p + (1 - self.beta) * q)
                    terms = (np.where(p > 0, self.beta * p * (log_p - log_m), 0.0)
                             + np.where(q > 0, (1 - self.beta) * q * (log_q - log_m), 0.0))
        return terms * (self.temperature ** 2 if self.scaled and self.tempered else 1.0)

    def applies_to(self, probe):
        """Whether the probe's rows (and its mask, if any) are along this class axis."""
        rank = probe.rank
        # Rows normalised along another axis are not distributions along this one (a
        # function that renormalises them is not wrong there).
        return -rank <= self.axis < rank and probe.axis % rank == self.axis % rank

    def reduce(self, terms, meaning, kept=None):
        """The output of `meaning` from the terms; `kept` marks the rows a mask counts
        (None: every row)."""
        axis = self.axis % max(terms.ndim, 1)
        counted = None if self.mistake in ("mask-divisor", "mask-ignored") else kept
        if self.mistake in ("mask-value", "mask-ignored"):
            kept = None
        if kept is not None and terms.ndim:
            terms = np.where(np.expand_dims(kept, axis), terms, 0.0)
        if meaning == Meaning.ELEMENTWISE:
            return terms
        if meaning == Meaning.ROWS:
            return np.sum(terms, axis=axis) if terms.ndim else terms
        kept_rows = None if counted is None else int(np.sum(counted))
        return np.asarray(np.sum(terms) / max(divisor(meaning, terms.shape, axis, kept_rows), 1))

    def predict(self, probe, meaning):
        return self.reduce(self.terms(probe.first, probe.second), meaning, probe.kept)

    def describe(self):
        text = "f(" + ", ".join(f"{role} ({self.spaces[ROLES.index(role)]})"
                                for role in self.order) + ")"
        extras = []
        if self.axis != -1:
            extras.append(f"class axis {self.axis}")
        if self.tempered:
            extras.append(f"T = {self.temperature:g}"
                          + (", times T**2" if self.scaled else ", no T**2"))
        if self.mistake:
            extras.append(MISTAKES[self.mistake][0])
        if self.family == JSD:
            extras.append(f"JSD beta = {self.beta:g}")
        elif self.family == CROSS_ENTROPY:
            extras.append("cross-entropy")
        return text + (f" [{'; '.join(extras)}]" if extras else "")

    def assumptions(self):
        """What `--assume` can pin of this reading."""
        return {"first": self.order[0], "prediction": self.spaces[0],
                "target": self.spaces[1], "axis": str(self.axis),
                "scaled": "yes" if self.scaled and self.tempered else "no"}


def readings(axes=(-1,), temperatures=((1.0, False),), family=KL, betas=(None,),
             mistake=None):
    """Every argument order and pair of spaces, at each axis, temperature and weight."""
    found = []
    for order, spaces, axis, (temperature, scaled), beta in product(
            (ROLES, ROLES[::-1]), product(SPACES, repeat=2), axes, temperatures, betas):
        hypothesis = Hypothesis(order, spaces, axis, temperature, scaled, family, beta, mistake)
        if (temperature != 1.0 or scaled) and not hypothesis.tempered:
            continue  # a temperature changes nothing without logits
        if mistake in ("student-only-T", "target-only-T") and set(spaces) != {Space.LOGITS}:
            continue
        found.append(hypothesis)
    return found


def residual(observed, expected):
    """Largest error relative to the size of the expected output; inf on a shape mismatch
    or a non-finite value where a finite one belongs."""
    observed, expected = np.asarray(observed), np.asarray(expected)
    if observed.shape != expected.shape or not np.all(np.isfinite(observed)):
        return math.inf
    scale = max(float(np.max(np.abs(expected))) if expected.size else 0.0, 1e-300)
    return float(np.max(np.abs(observed - expected))) / scale if expected.size else 0.0
