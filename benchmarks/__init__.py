"""Benchmark references: the stages' math in plain TensorFlow, FLOP counts and the machine's peak."""
