"""Strict JAX for the whole suite: float64 for tight tolerances, no silent rank promotion."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
