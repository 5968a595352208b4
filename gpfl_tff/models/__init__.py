"""Keras language models wrapped for TFF, with metrics that are sums."""
