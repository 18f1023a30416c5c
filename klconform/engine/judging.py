"""Which claims a check judges, which claims a call cannot judge, and the per-claim verdict.

A case names the claims it supports, but its checks test different things: a wrong result
dtype says nothing about the roles, a missing warning nothing about the value. Each check
kind judges the case's claims of its own family; a value check judges the case's value
claims, or, in a case that names none (a warning case), the claim of the call itself (its
reduction, its log_target), so a wrong value can never pass as a mere warning.

A claim can need what a call does not give (spec/claims.yaml `requires`): the library's own
reduction rather than one klconform composed, the target in the library's own space,
autograd. Such a claim is unsupported for that call, with the reason, and counted so.
"""

from klconform.statuses import Level, Status, strictest

# Families of claims that are not about the value of the call.
NOT_VALUE_FAMILIES = ("warnings", "precision", Level.IMPLEMENTATION_DEFINED)
CALL_CLAIM = {None: "default-reduction-mean", "none": "none-pointwise", "sum": "reduction-sum",
              "mean": "reduction-mean", "batchmean": "reduction-batchmean"}
DTYPE_CLAIM = "result-dtype"
# Claims about a distillation loss's features are not applicable where none is declared.
DISTILLATION_FEATURES = {
    "temperature": "a temperature (its record declares none)",
    "mask": "a mask (its record declares none)",
    "logits": "logits (it normalises no argument itself)",
}


def value_claims(case_claims, call, spec, composed=False):
    """The claims a wrong value (or shape) of this call breaks.

    Derived from the call where the case names none; a reduction klconform composed says
    nothing about the library's reduction, so its value falls on `roles` (the value is
    KL(P||Q)) instead.
    """
    claims = [claim for claim in case_claims
              if spec.claims[claim].family not in NOT_VALUE_FAMILIES]
    if claims:
        return claims
    derived = ["roles" if composed and call.reduction is not None
               else CALL_CLAIM.get(call.reduction, "invalid-reduction-rejected")]
    if call.log_target:
        derived.append("log-target")
    return [claim for claim in derived if claim in spec.claims]


def claims_of_family(families, case_claims, call, spec, composed=False):
    """The case's claims in `families`, else its value claims."""
    claims = [claim for claim in case_claims if spec.claims[claim].family in families]
    return claims or value_claims(case_claims, call, spec, composed)


def unsupported_claims(claims, plan, capabilities, spec):
    """claim -> reason, for the claims this call cannot judge."""
    reasons = {claim: reason for claim, reason in plan.unjudged if claim in claims}
    for claim in claims:
        for need in spec.claims[claim].requires:
            if need == "native-reduction" and plan.composed:
                reasons[claim] = plan.composed
            elif need == "unconverted-target" and any(
                    conversion.startswith("target") for conversion in plan.conversions):
                reasons[claim] = ("the target is converted to the library's log space by "
                                  "klconform, where 0 becomes -inf")
            elif need == "autograd" and not capabilities.autograd:
                reasons[claim] = "autograd (declared absent)"
            elif need == "layouts" and not getattr(capabilities, "layouts", None):
                reasons[claim] = ("memory layouts: its arrays are handed over by klconform, "
                                  "not as views")
            elif need == "token-mean" and plan.declared_meaning != "mean-rows":
                reasons[claim] = ("a mean over tokens read by this call (its record declares "
                                  "none, or klconform composes it from a finer output)")
            elif need in DISTILLATION_FEATURES and need not in getattr(
                    capabilities, "distillation", ()):
                reasons[claim] = DISTILLATION_FEATURES[need]
    return reasons


def settle(outcome, failures, judged, unsupported, spec):
    """Per-claim results from the attributed failures; the outcome's status from them."""
    results = {}
    for claim in dict.fromkeys(judged):
        if claim in unsupported:
            results[claim] = Status.UNSUPPORTED
            outcome.claim_reasons[claim] = unsupported[claim]
        elif failures.by_claim.get(claim):
            results[claim] = Status.FAILED
        else:
            results[claim] = Status.PASSED
    # Lines not attributed to a claim fall on every judged claim (a check that could not
    # say which claim it tests must not get lost).
    if failures.by_claim.get(None):
        for claim, status in results.items():
            if status == Status.PASSED:
                results[claim] = Status.FAILED
    outcome.claim_results = results
    outcome.notes = list(failures.notes)
    failing = [claim for claim, status in results.items() if status == Status.FAILED]
    if failing:
        outcome.status = Status.FAILED
        outcome.claims = tuple(failing)
        outcome.level = strictest(spec.claims[claim].level for claim in failing)
        outcome.checks = failures.lines
    elif results and all(status == Status.UNSUPPORTED for status in results.values()):
        outcome.status = Status.UNSUPPORTED
    return outcome


def distillation_case_not_applicable(case, plan, capabilities, spec):
    """Why a distillation case's derived checks (gradients, layouts) are not run here: every
    claim it names needs a feature this implementation does not declare. None otherwise."""
    claims = case.claims
    if not claims or any(spec.claims[claim].family != "distillation" for claim in claims):
        return None
    reasons = unsupported_claims(claims, plan, capabilities, spec)
    if len(reasons) < len(claims):
        return None
    return "; ".join(sorted(set(reasons.values())))
