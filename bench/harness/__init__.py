"""The harness programs: the suite measuring itself and its estimator (perf, cost, gpu, badinput, peft-runs)."""
