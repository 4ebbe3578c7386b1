"""Losses only: an objective takes tensors and returns a scalar; it never calls a model."""
