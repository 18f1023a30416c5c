"""What each output computes: the reduction names a function accepts, the meaning of each and
of its default, and the keyword or sibling function that takes the target in log space.

A standard reduction name keeps its standard meaning relative to the output unit ('batchmean'
= total / size(0) whatever 'mean' does): a name that computes something else is a finding on
that name's claim, and the record states the standard meaning so that the run fails on it.
"""

from dataclasses import replace
from itertools import product

import numpy as np

from klconform.adapters.convention import resolve
from klconform.authoring.diagnose.evidence import show
from klconform.authoring.diagnose.fitting import fitting_meanings, meaning_residuals
from klconform.authoring.diagnose.hypotheses import MEANINGS
from klconform.authoring.diagnose.probes import probe_set
from klconform.engine.judging import CALL_CLAIM
from klconform.spec.conventions import MEANING_TEXT, Meaning, Space

# What a standard reduction name must compute, relative to the function's finest output.
STANDARD_MEANING = {
    "none": {Meaning.ELEMENTWISE: Meaning.ELEMENTWISE, Meaning.ROWS: Meaning.ROWS},
    "sum": {Meaning.ELEMENTWISE: Meaning.SUM, Meaning.ROWS: Meaning.SUM},
    "mean": {Meaning.ELEMENTWISE: Meaning.MEAN_ELEMENTS, Meaning.ROWS: Meaning.MEAN_ROWS},
    "batchmean": {Meaning.ELEMENTWISE: Meaning.MEAN_BATCH, Meaning.ROWS: Meaning.MEAN_BATCH},
}
# Names worth trying when neither the signature nor the docstring lists the accepted values.
USUAL_REDUCTION_NAMES = ("none", "sum", "mean", "batchmean", "sum_over_batch_size")
UNKNOWN_REDUCTION = "klconform-no-such-reduction"
DEFAULT = "(default)"


def accepted_names(prober, signature, probes):
    """(names accepted, whether an unknown name is accepted too, evidence lines)."""
    candidates = dict.fromkeys(
        [signature.reduction_default] if isinstance(signature.reduction_default, str) else [])
    candidates.update(dict.fromkeys(signature.documented_names))
    candidates.update(dict.fromkeys(USUAL_REDUCTION_NAMES))
    accepted = [name for name in candidates
                if prober.first_accepted(probes, **{signature.reduction: name})[1]]
    takes_anything = prober.first_accepted(
        probes, **{signature.reduction: UNKNOWN_REDUCTION})[1] is not None
    rejected = [name for name in candidates if name not in accepted]
    lines = [f"tried {len(candidates)} names (signature default, docstring, usual ones); "
             f"accepted: {', '.join(map(repr, accepted)) or 'none'}",
             f"rejected: {', '.join(map(repr, rejected[:12])) or 'none'}"]
    return accepted, takes_anything, lines


def same_output(first, second):
    by_probe = {probe.describe(): outcome for probe, outcome in second}
    pairs = [(a.value, by_probe[probe.describe()].value) for probe, a in first
             if a.ok and probe.describe() in by_probe and by_probe[probe.describe()].ok]
    return bool(pairs) and all(a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=0,
                                                                 equal_nan=True)
                               for a, b in pairs)


def names_it_knows(variants, names, hypothesis, tolerance):
    """For a function that takes any string: the names it treats differently from an unknown
    one, and standard names that compute their standard meaning (paddle's 'none' is the
    elementwise terms, which is also what it returns for a name it does not know)."""
    known = []
    for name in names:
        if name == UNKNOWN_REDUCTION:
            continue
        fitting = fitting_meanings(variants[name], hypothesis, tolerance)
        standard = set(STANDARD_MEANING.get(name, {}).values())
        if not same_output(variants[name], variants[UNKNOWN_REDUCTION]) \
                or standard & set(fitting):
            known.append(name)
    return known


def _pick_meaning(fitting, name, unit):
    """One meaning of several that fit equally (they agree on every shape the function
    accepts): a standard name's own meaning, else the finest."""
    standard = STANDARD_MEANING.get(name, {}).get(unit)
    if standard in fitting:
        return standard
    return min(fitting, key=MEANINGS.index)


def _unit_of(fitting_by_name):
    for unit in (Meaning.ELEMENTWISE, Meaning.ROWS):
        if any(unit in fitting for fitting in fitting_by_name.values()):
            return unit
    return None


def infer_meanings(variants, hypothesis, tolerance, signature, names, diagnosis):
    """Native name -> meaning, plus DEFAULT -> the default's name (or the output's meaning
    where there is no reduction argument); None where a name cannot be given one."""
    fitting_by_name = {label: fitting_meanings(variants[label], hypothesis, tolerance)
                       for label in (None, *names)}
    unit = _unit_of(fitting_by_name)
    meanings, lines = {}, []
    for name in names:
        fitting = fitting_by_name[name]
        standard = STANDARD_MEANING.get(name, {}).get(unit)
        if not fitting:
            best = min(meaning_residuals(variants[name], hypothesis).values())
            diagnosis.find(f"reduction={name!r} computes none of the meanings (best residual "
                           f"{show(best)})" + (f"; recorded as {standard!r}, its standard "
                                               "meaning" if standard else ""),
                           CALL_CLAIM.get(name))
            if standard is None:
                diagnosis.ambiguities.append(
                    f"reduction={name!r}: no meaning fits and the name has no standard one")
                return None
            meanings[name] = standard
            continue
        measured = _pick_meaning(fitting, name, unit)
        if standard and standard not in fitting:
            looks_like = next((other for other, by_unit in STANDARD_MEANING.items()
                               if by_unit.get(unit) == measured), None)
            diagnosis.find(f"looks like: {name!r} computed as {looks_like!r}" if looks_like
                           else f"reduction={name!r} computes {MEANING_TEXT[measured]}, not "
                                f"{MEANING_TEXT[standard]}", CALL_CLAIM.get(name))
            measured = standard
        ties = [m for m in fitting if m != measured]
        lines.append(f"{name!r}: {measured}" + (
            f" (equal to {', '.join(ties)} on every shape it accepts)" if ties else ""))
        meanings[name] = measured
    default_fits = fitting_by_name[None]
    if names:
        same = [name for name in names if same_output(variants[None], variants[name])]
        preferred = signature.reduction_default
        default = preferred if preferred in same else (same[0] if same else None)
        if default is None and signature.reduction_default is not None:
            diagnosis.find(f"the call without {signature.reduction!r} matches none of the "
                           f"accepted names (the signature says "
                           f"{signature.reduction_default!r})", "default-reduction-mean")
        lines.append(f"default (no {signature.reduction!r}): "
                     + (repr(default) if default else "none of the names"))
        meanings[DEFAULT] = default
    else:
        if not default_fits:
            diagnosis.find("its output matches no meaning", "none-pointwise")
            return None
        meanings[DEFAULT] = _pick_meaning(default_fits, None, unit)
        ties = [m for m in default_fits if m != meanings[DEFAULT]]
        lines.append(f"no reduction argument; output: {meanings[DEFAULT]}" + (
            f" (equal to {', '.join(ties)} on every shape it accepts)" if ties else ""))
    diagnosis.note("output", f"unit {unit or 'scalar only'}", lines)
    return meanings


def finest(meanings, signature):
    """(keywords, meaning) of the least reduced call: a reduction name's, else the plain
    call's (the function has no reduction argument)."""
    if signature.reduction and len(meanings) > 1:
        name = min((n for n in meanings if n != DEFAULT),
                   key=lambda n: MEANINGS.index(meanings[n]))
        return {signature.reduction: name}, meanings[name]
    return {}, meanings[DEFAULT]


def _log_target_forms(function_path, signature, keywords):
    """(form for the record, sibling function or None, keywords) to try."""
    forms = [({"keyword": name}, None, {name: not default, **keywords})
             for name, default in signature.flags.items() if default is False]
    module_name, _, attribute = function_path.partition(":")
    try:
        module = resolve(module_name + ":" + attribute.rsplit(".", 1)[0], function_path) \
            if "." in attribute else __import__(module_name, fromlist=["_"])
    except Exception:  # no module to look in: only keyword forms
        module = None
    base = attribute.rsplit(".", 1)[-1]
    for name in sorted(dir(module)) if module is not None else ():
        if name != base and name.startswith(base) and "log" in name[len(base):]:
            sibling = getattr(module, name)
            if callable(sibling):
                forms.append(({"function": f"{module_name}:{attribute[:-len(base)]}{name}"},
                              sibling, dict(keywords)))
    return forms


def infer_log_target(prober, function_path, hypothesis, meanings, signature, tolerance,
                     diagnosis):
    """A boolean keyword, or a sibling function, that takes the target in log space."""
    if hypothesis.spaces[1] != Space.PROBABILITIES:
        return None
    # Probed through the finest output: the plainest view of the target's space.
    keywords, probed_meaning = finest(meanings, signature)
    forms = _log_target_forms(function_path, signature, keywords)
    lines = []
    probes = probe_set((2, 3), masked=prober.mask is not None)
    for form, sibling, form_keywords in forms:
        outcomes = prober.observe(probes, function=sibling, **form_keywords)
        # The target in log space is log-probabilities, or logits where the form normalises
        # it (Categorical(logits=log P)); the prediction may move to log space with it. The
        # stricter reading comes first: where only normalised rows are accepted both fit.
        for prediction_space, target_space in product(
                dict.fromkeys((hypothesis.spaces[0], Space.LOG_PROBABILITIES)),
                (Space.LOG_PROBABILITIES, Space.LOGITS)):
            moved = replace(hypothesis, spaces=(prediction_space, target_space))
            worst = meaning_residuals(outcomes, moved, (probed_meaning,))[probed_meaning]
            label = ", ".join(f"{k}={v}" for k, v in form.items())
            lines.append(f"{label}: {moved.describe()} residual {show(worst)}")
            if worst <= tolerance:
                if prediction_space != hypothesis.spaces[0]:
                    form = {**form, "prediction": prediction_space}
                if target_space != Space.LOG_PROBABILITIES:
                    form = {**form, "target": target_space}
                diagnosis.note("log target", label, lines)
                return form
    diagnosis.note("log target", "none" if forms else "no candidate keyword or function",
                   lines)
    return None
