"""Exact metrics from per-client sums, and the files an experiment writes."""
