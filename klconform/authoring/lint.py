"""`klconform check-spec`: the linter for claims and cases.

Checks: both schemas, unique ids, known claims and sources, every live claim covered by at
least one case, and every published number reproduced by the extended-precision oracle
within the precision the document printed it with.
"""

from dataclasses import dataclass

import numpy as np

from klconform.constants import DEFAULT_REDUCTION
from klconform.dtypes import round_to
from klconform.engine.expectations import published_allowance
from klconform.errors import SpecError
from klconform.oracle import extended as precise
from klconform.oracle.float64 import expected as oracle_expected
from klconform.spec import tensors
from klconform.spec.cases import load_cases
from klconform.spec.claims import load_spec


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self):
        return f"{self.where}: {self.message}"

    @classmethod
    def from_spec_error(cls, error):
        # str(error) is "file[:line]: [case ...: field ...: ]message"; the split keeps the
        # line number with the file, so the printed line is exactly the error's own.
        where = error.file + (f":{error.line}" if error.line else "")
        return cls(where, str(error)[len(where) + 2:])


def check_spec(spec_dir=None, cases_dir=None, extra_dir=None):
    """(problems, counts). Loading errors stop at the first; coverage and numbers collect all.

    cases_dir replaces the bundled cases and must cover every claim. extra_dir holds a
    user's own cases, run beside the bundled ones: they are loaded with them (so an id
    that clashes is caught) and checked, but need not cover anything; counts are theirs.
    """
    try:
        spec = load_spec(spec_dir)
        cases = load_cases(cases_dir, spec=spec, spec_dir=spec_dir, extra_dirs=[extra_dir])
    except SpecError as error:
        return [Problem.from_spec_error(error)], {}
    problems = []
    if extra_dir:
        from pathlib import Path

        root = Path(extra_dir).resolve()
        cases = [case for case in cases if root in Path(case.file).resolve().parents]
    else:
        covered = {claim for case in cases for claim in case.claims}
        covered |= generated_coverage(cases)
        for claim in spec.claims.values():
            if claim.id not in covered:
                problems.append(Problem(str(spec.path), f"claim {claim.id!r} has no case"))
    published_count = 0
    for case in cases:
        published = case.expect.get("published")
        if not published:
            continue
        published_count += 1
        problem = _check_published(case, published)
        if problem:
            stated_field = "value" if "value" in published else "array"
            problems.append(Problem(f"{case.file}:{case.line}: case {case.id!r}: "
                                    f"field 'expect.published.{stated_field}'", problem))
    counts = {"claims": len(spec.claims), "cases": len(cases), "published": published_count,
              "files": len({case.file for case in cases})}
    return problems, counts


def generated_coverage(cases):
    """Claims checked by generated suites rather than named by cases, if they have input.

    suites/test_gradients.py derives a gradient check from every eligible value case, and
    suites/test_layouts.py a layout check.
    """
    from klconform.engine.attribution import LOWER_PRECISION, PRECISION_CLAIM
    from klconform.engine.gradients import CLAIMS as GRADIENT_CLAIMS
    from klconform.engine.gradients import MASK_GRADIENT_CLAIM, eligible
    from klconform.engine.layout_checks import CLAIM as LAYOUT_CLAIM

    if not any(eligible(case) for case in cases):
        return set()
    generated = {*GRADIENT_CLAIMS, LAYOUT_CLAIM}
    if any(eligible(case) and case.mask is not None and not case.mask.all()
           for case in cases):
        generated.add(MASK_GRADIENT_CLAIM)
    # Every value case at a dtype with a lower precision judges the precision claim.
    if any(case.kind == "value" and set(case.dtypes) & set(LOWER_PRECISION)
           for case in cases):
        generated.add(PRECISION_CLAIM)
    return generated


def _check_published(case, published):
    x, t = case.arrays
    source_dtype = published.get("computed_in", "float64")
    # The document ran on inputs rounded to its dtype; so does this check.
    x, t = round_to(x, source_dtype), round_to(t, source_dtype)
    reduction = case.call.get("reduction", DEFAULT_REDUCTION)
    log_target = bool(case.call.get("log_target"))
    exact = precise.as_float64(precise.kl_value(x, t, reduction=reduction,
                                                log_target=log_target))
    stated = tensors.build(published.get("value", published.get("array")))
    computation = oracle_expected(x, t, reduction=reduction, log_target=log_target,
                                  dtype=source_dtype).budget
    allowed = published_allowance(published, computation)
    error = np.abs(exact - stated)
    if np.all(error <= allowed):
        return None
    index = np.unravel_index(int(np.argmax(error - allowed)), np.shape(error)) \
        if np.ndim(error) else ()
    return (f"published {float(np.asarray(stated)[index]):.{published['decimals']}f} is not "
            f"reproduced: the oracle gives {float(np.asarray(exact)[index]):.10g} "
            f"(allowed {float(np.asarray(allowed)[index]):.3g} "
            f"at {published['decimals']} decimals)")
