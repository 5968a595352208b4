"""gpfl_tff: group personalized federated learning on TensorFlow Federated."""
