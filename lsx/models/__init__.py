"""Autoencoders and their objectives.

A model is an `Autoencoder` NamedTuple of pure functions over a params pytree. An
objective is an `lsx.objective.Objective` whose loss is `loss(params, images, rng, hp) ->
(scalar, aux)`; every weight in `hp` is an array (traced), so a sweep stacks `hp` along a
member axis and `vmap`s the loss. Objectives are found by name in `objectives.REGISTRY`.
"""
from lsx.models.autoencoder import Autoencoder, make_autoencoder
from lsx.models.objectives import OBJECTIVES, make_objective
from lsx.objective import Objective

__all__ = ["Autoencoder", "make_autoencoder", "Objective", "make_objective", "OBJECTIVES"]
