"""Stage 5, telling: report.json, report.md and the matrix, built from a run stream and
the claims alone. Nothing here imports an adapter, the engine or the case loader."""
