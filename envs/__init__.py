"""Adapters for real environments: how their observations become frames of tokens and back."""
