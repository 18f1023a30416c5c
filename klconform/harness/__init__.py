"""Stage 4, running: the pytest plugin, the session state, the run stream, and the child
runner that survives crashes. Turns Outcomes into pytest results and stream events."""
