"""Federated stages: training rounds, local fine-tuning, the methods compared."""
