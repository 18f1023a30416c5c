"""The text a person reads when a case fails: claim, expected vs actual, budget, snippet."""

from functools import lru_cache


@lru_cache(maxsize=1)
def _claims():
    from klconform.spec.claims import load_spec

    return load_spec().claims


def claim_line(claim_id):
    claim = _claims().get(claim_id)
    if claim is None:
        return claim_id
    return f"{claim_id} ({claim.level}): {claim.statement}"


def failure_text(outcome) -> str:
    lines = [f"klconform case {outcome.case_id} [{outcome.dtype}] {outcome.status.upper()}"]
    lines += [f"  claim  {claim_line(claim)}" for claim in outcome.claims]
    lines += [f"  check  {check}" for check in outcome.checks]
    if outcome.expected is not None:
        lines.append(f"  expected {outcome.expected}")
    if outcome.actual is not None:
        lines.append(f"  actual   {outcome.actual}")
    if outcome.budget is not None:
        lines.append(f"  budget   {outcome.budget:.3g} (absolute, {outcome.dtype})")
    if outcome.diagnosis:
        lines.append(f"  {outcome.diagnosis}")
    if outcome.snippet:
        lines.append("  reproduce:")
        lines += ["    " + line for line in outcome.snippet.rstrip().splitlines()]
    return "\n".join(lines)


