"""The world-model trainer, data collection, and the `worldsim` command line."""
