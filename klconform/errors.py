"""Errors that reach a person as one line: what was wrong and where."""


class KLConformError(Exception):
    """Base class; str(error) is a complete one-line message."""


class SpecError(KLConformError):
    """A spec or case file is malformed. Carries file, line, case id and field where known."""

    def __init__(self, file, message, *, case_id=None, field=None, line=None):
        self.file = str(file)
        self.case_id = case_id
        self.field = field
        self.line = line
        self.detail = message
        where = self.file + (f":{line}" if line else "")
        parts = [where]
        if case_id:
            parts.append(f"case {case_id!r}")
        if field:
            parts.append(f"field {field!r}")
        super().__init__(": ".join(parts) + f": {message}")


class ImplementationLoadError(KLConformError):
    """--impl named something that could not be turned into an adapter."""
