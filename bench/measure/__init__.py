"""Measurement: parameter counts, memory and its breakdown, quality metrics, inference cost, forgetting, the estimator."""
