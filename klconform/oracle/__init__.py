"""Stage 2, what the right answer is: the float64 oracle, its error budgets, and the
extended-precision evaluation of the worked examples. Never calls an implementation."""
