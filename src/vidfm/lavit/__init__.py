"""Video-LaVIT's compressed-domain video tokenizer: clips with codec motion (:mod:`~vidfm.lavit.clips`), the
motion VQ-VAE (:mod:`~vidfm.lavit.motion_vq`), the keyframe tokenizer (:mod:`~vidfm.lavit.keyframe`), the
motion-conditioned video detokenizer (:mod:`~vidfm.lavit.detokenizer`) and the end-to-end API
(:mod:`~vidfm.lavit.tokenize`)."""
