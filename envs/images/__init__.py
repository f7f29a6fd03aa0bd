"""Envs with image observations: the learned frame tokenizer, reconstruction quality, image sources."""
