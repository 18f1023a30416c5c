"""Stage 3, judging: one call against the oracle under the dtype's budget, the checks per
expectation kind, gradients, properties, diagnosis, isolation of broken calls. Produces
Outcomes; knows neither pytest nor reports."""
