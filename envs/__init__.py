"""Adapters for real environments: how their observations become frames of tokens and back."""

from envs.crafter import register as _register_crafter

_register_crafter()
