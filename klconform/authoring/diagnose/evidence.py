"""What a diagnosis found: the evidence per topic, the findings (bugs, each naming the claim the
run will fail on it), what stayed undecided, and the record or what the function is instead."""

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Evidence:
    topic: str
    conclusion: str
    lines: list = field(default_factory=list)


@dataclass
class Diagnosis:
    function: str
    evidence: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    ambiguities: list = field(default_factory=list)
    record: object = None        # an ImplementationRecord, when one was inferred
    confidence: str = None
    not_a_kl: str = None         # what the function computes when that is not a KL
    imprecise: float = None      # the chosen reading's residual, where it fits only nearly
    assumed: dict = field(default_factory=dict)  # --assume values the function contradicts

    def note(self, topic, conclusion, lines=()):
        self.evidence.append(Evidence(topic, conclusion, list(lines)))

    def absorb(self, trial):
        """Take what a trial diagnosis (one mask form, one set of assumptions) found."""
        for name in ("evidence", "findings", "ambiguities"):
            getattr(self, name).extend(getattr(trial, name))
        self.assumed.update(trial.assumed)
        for name in ("confidence", "not_a_kl", "imprecise"):
            setattr(self, name, getattr(trial, name))

    def find(self, text, claim):
        """A bug; `claim` is the claim the run fails on it (None: the record leaves it out)."""
        self.findings.append(text + (f" [the run fails {claim}]" if claim else ""))


def show(value):
    return "no informative probe" if value == math.inf else f"{value:.2e}"


def short(value):
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value):.6g}"
    return np.array2string(value.ravel()[:4], precision=6) + (" ..." if value.size > 4 else "")
