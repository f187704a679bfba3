"""Scores to honest numbers: metrics and the Validation threshold, robustness under corruptions, extra
test sets, the pictures and the report that compares two runs."""
