"""Tools for people writing cases: the spec linter (check-spec) and case-from-example."""
