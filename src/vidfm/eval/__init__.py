"""Evaluation: frozen features, probes (linear, kNN), reports. Separate from training."""
