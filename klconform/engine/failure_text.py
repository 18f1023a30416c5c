"""The text a person reads when a case fails: claim, expected vs actual, budget, snippet."""

from functools import lru_cache


@lru_cache(maxsize=1)
def _claims():
    from klconform.spec.claims import load_spec

    try:
        return load_spec().claims
    except Exception:
        return {}


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


def one_line(outcome_record) -> str:
    """A failure as one line, for tables."""
    checks = outcome_record.get("checks") or []
    text = checks[0] if checks else outcome_record.get("message", "")
    return " ".join(str(text).split())
