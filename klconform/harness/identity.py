"""What each conformance test checks, decided once, where the test is made.

Every test of the bundled suites is one (kind, case, dtype): its parameter id, its id
relative to the suites and the claims it bears on come from here, and the run stream
carries them on the test's start and record events. Nothing downstream works them back out
of a pytest node id: a test that crashed the process before recording anything is still
counted against the claims of its own kind (a layout test against layout-independence, not
against its case's value claims).
"""

from dataclasses import dataclass

from klconform.statuses import Level


@dataclass(frozen=True)
class Suite:
    kind: str
    file: str          # relative to the suites folder
    function: str
    argument: str      # the fixture the plugin parametrizes with the case or property id


SUITES = (
    Suite("case", "test_cases.py", "test_case", "kl_case"),
    Suite("gradient", "test_gradients.py", "test_gradient", "kl_gradient_case"),
    Suite("layout", "test_layouts.py", "test_layout", "kl_layout_case"),
    Suite("property", "test_properties.py", "test_property", "kl_property"),
)
BY_ARGUMENT = {suite.argument: suite for suite in SUITES}


@dataclass(frozen=True)
class TestIdentity:
    kind: str
    case_id: str       # as the test's record names it: "roles", "grad:roles", "property:..."
    dtype: str
    claims: tuple
    level: str
    param: str         # pytest's parameter id: "<case or property id>-<dtype>"
    test: str          # "test_cases.py::test_case[<param>]": pytest --impl takes it anywhere

    def fields(self):
        """The identity as the run stream's start and record events carry it."""
        return {"kind": self.kind, "case_id": self.case_id, "dtype": self.dtype,
                "claims": list(self.claims), "level": str(self.level), "test": self.test}


def errored(fields):
    """The identity fields of a test that died before recording a result: whatever level
    its claims have, a test that cannot run fails the run (level must)."""
    fields = dict(fields)
    if "level" in fields:
        fields["level"] = str(Level.MUST)
    return fields


def _identity(suite, subject_id, case_id, dtype, claims, level):
    param = f"{subject_id}-{dtype}"
    return TestIdentity(suite.kind, case_id, dtype, tuple(claims), level, param,
                        f"{suite.file}::{suite.function}[{param}]")


def tests_of(suite, cases):
    """(subject, identity) for each test `suite` makes: a case or a property id."""
    from klconform.dtypes import DTYPES

    if suite.kind == "property":
        from klconform.engine.properties import BY_ID, CASE_PREFIX
        from klconform.spec.claims import load_spec
        from klconform.statuses import strictest

        claims = load_spec().claims
        return [(prop.id, _identity(suite, prop.id, CASE_PREFIX + prop.id, dtype, prop.claims,
                                    strictest(claims[claim].level for claim in prop.claims)))
                for prop in BY_ID.values() for dtype in DTYPES]
    if suite.kind == "case":
        return [(case, _identity(suite, case.id, case.id, dtype, case.claims, case.level))
                for case in cases for dtype in case.dtypes]
    from klconform.engine import gradients, layout_checks

    eligible = [case for case in cases if gradients.eligible(case)]
    if suite.kind == "gradient":
        return [(case, _identity(suite, case.id, gradients.CASE_PREFIX + case.id, dtype,
                                 gradients.CLAIMS, Level.MUST))
                for case in eligible for dtype in case.dtypes
                if dtype in gradients.GRADIENT_DTYPES]
    return [(case, _identity(suite, case.id, layout_checks.CASE_PREFIX + case.id, dtype,
                             (layout_checks.CLAIM,), Level.MUST))
            for case in eligible for dtype in case.dtypes]


def identities(cases):
    """Suite test id -> TestIdentity, for every test the suites make from `cases`."""
    return {identity.test: identity
            for suite in SUITES for _, identity in tests_of(suite, cases)}
