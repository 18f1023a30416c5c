"""`klconform diagnose`: an unknown KL function's convention, inferred from probes, as a record.

probes (the designed inputs) -> subject (the signature; calling the function) -> hypotheses
(what each reading predicts) -> fitting (which reading fits) -> outputs and behaviour (what
each output computes; ranks, dtypes, gradients, bugs) -> inference (the record) -> render.
"""

from klconform.authoring.diagnose.evidence import Diagnosis
from klconform.authoring.diagnose.inference import diagnose
from klconform.authoring.diagnose.render import (
    diagnose_command,
    parse_assumptions,
    parse_calls,
    record_text,
    render,
)
from klconform.authoring.diagnose.subject import DiagnoseError

__all__ = ["DiagnoseError", "Diagnosis", "diagnose", "diagnose_command", "parse_assumptions",
           "parse_calls", "record_text", "render"]
