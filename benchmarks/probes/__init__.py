"""Scratch probes for rule formulations and compiled-program parity (not part of the suite)."""
