"""Stage 1, the specification as data: claims, cases, tensors, the YAML loader, deviations.

Nothing here knows an implementation, an oracle or pytest.
"""
