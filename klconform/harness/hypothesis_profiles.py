"""Hypothesis settings for the property layer.

`default` is derandomized: the same examples every run, so CI never flakes. `thorough`
draws fresh examples (from --kl-seed when given, so a failure can be replayed) and more
of them. What was used is recorded in the report.
"""

DEFAULT_EXAMPLES = 25
THOROUGH_EXAMPLES = 400


def describe(profile, seed=None, max_examples=None):
    """The settings as the report records them (no hypothesis import needed)."""
    examples = max_examples or (THOROUGH_EXAMPLES if profile == "thorough" else DEFAULT_EXAMPLES)
    return {"hypothesis_profile": profile, "max_examples": examples,
            "derandomize": profile != "thorough", "seed": seed}


def configure(profile, seed=None, max_examples=None):
    """Register and load the profile; returns the settings to record in the report."""
    from hypothesis import HealthCheck, Phase, settings

    recorded = describe(profile, seed, max_examples)
    examples = recorded["max_examples"]
    # Hypothesis's explain phase re-runs a shrunk failure many times to annotate which parts
    # of it could vary; klconform reports the shrunk example itself and never shows those
    # notes, and the phase took 549 of 588 shrinking samples of keras-jax's xfailing
    # properties.
    phases = tuple(phase for phase in Phase if phase is not Phase.explain)
    common = dict(max_examples=examples, deadline=None, print_blob=True, phases=phases,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])
    if profile == "thorough":
        settings.register_profile("klconform-thorough", derandomize=False, database=None,
                                  **common)
    else:
        settings.register_profile("klconform-default", derandomize=True, database=None,
                                  **common)
    settings.load_profile(f"klconform-{profile}")
    return recorded
