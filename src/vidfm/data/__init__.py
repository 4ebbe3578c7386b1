"""Video data: PyAV decoding, frame sampling, datasets, batch-level augmentation, digits-motion."""
