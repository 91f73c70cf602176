"""Reproduction: preflight, the notebook runner, the reproduction check, the results index."""
