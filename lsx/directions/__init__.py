"""Interpretable directions in a generator's latent space.

Pure functions over a generator `G: z -> x` and a feature map `phi`, so they apply to lsx
decoders and to any JAX generator:

- parameterizations (`make_directions`): global, linear / nonlinear conditional,
  orthogonal (Householder product, expm of a skew matrix);
- learned objectives: contrastive (`latentclr_loss`, `noiseclr_loss`,
  `make_contrastive_objective`) and the reconstructor baseline (`make_voynov_objective`);
- closed-form baselines: `pca_directions`, `ganspace_directions`, `sefa_directions`,
  `jacobian_svd`; the supervised reference `factor_directions` (least squares of the
  codes on the ground-truth factors: what one global linear direction per factor reaches);
- use and scoring: `traverse`, `traversal_images`, `make_edit`, `score_directions` (DFA
  and variation predictability from `lsx.metrics`); `score_traversals` scores any
  `Traversal` (linear directions, conditional directions, potential flows) with one
  oracle pass for every set, `reference_sets` the rows they are compared with;
- training: `family` (methods by name in `METHODS`, `Decoder`, the 'directions' family
  `lsx.train.train` runs).

Example (closed form, then scoring)::

  dirs, params = fixed_directions(pca_directions(z, 5)[0])
  images = traversal_images(dirs, params, generate, z[:4], num_steps=3, step_size=0.5)
"""
from lsx.directions._closed_form import (factor_directions, ganspace_directions, jacobian_svd,
                                         pca_directions, sefa_directions)
from lsx.directions._objectives import (CONVENTIONS, FORMS, Reconstructor,
                                        contrastive_features, latentclr_loss,
                                        latentclr_loss_reference, make_contrastive_objective,
                                        make_feature_map, make_voynov_objective, sample_shifts,
                                        noiseclr_loss, noiseclr_loss_reference)
from lsx.directions._param import (KINDS, Directions, fixed_directions, householder_matrix,
                                   make_directions, normalize, skew_expm, traverse)
from lsx.directions._score import (CC_SCORES, SCORES, Reading, Traversal, active_latents,
                                  linear_traversal, make_edit, read_in_one_pass,
                                  reference_sets, score_direction_sets, score_directions,
                                  score_traversals, shift_pairs, summarize, take,
                                  traversal_frames, traversal_images, write_score_table)
from lsx.directions import family  # noqa: E402  (methods by name; the 'directions' family)
from lsx.directions import protocols  # noqa: E402  (the papers' evaluation protocols)
from lsx.directions.protocols import evaluate_sets  # noqa: E402

__all__ = [
    "CC_SCORES", "SCORES", "Traversal", "linear_traversal", "reference_sets",
    "score_traversals", "summarize", "take", "traversal_frames", "write_score_table",
    "CONVENTIONS", "latentclr_loss_reference", "noiseclr_loss_reference",
    "Directions", "FORMS", "KINDS", "Reading", "Reconstructor", "active_latents",
    "contrastive_features", "factor_directions",
    "fixed_directions", "ganspace_directions", "householder_matrix", "jacobian_svd",
    "latentclr_loss", "make_contrastive_objective", "make_directions", "make_edit",
    "make_feature_map", "make_voynov_objective", "noiseclr_loss", "normalize",
    "pca_directions", "read_in_one_pass", "sample_shifts", "score_direction_sets",
    "score_directions",
    "sefa_directions", "shift_pairs", "skew_expm",
    "traversal_images", "traverse", "protocols", "evaluate_sets",
]
