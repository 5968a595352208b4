"""Grouped federated text datasets: sources, splits, vocabulary and preprocessing."""
