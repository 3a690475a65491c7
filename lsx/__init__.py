"""lsx: learning, measuring and navigating interpretable latent spaces, in JAX.

Everything is a pure function of pytrees: models, objectives, steps and metrics run
unchanged under `jit`, `vmap` (sweeps) and sharding.
"""
__version__ = "0.1.0"
