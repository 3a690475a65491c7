"""The field's measuring tape: pure-JAX metrics where the math allows.

Functions on `latents [n, d]` (float) and integer `factors [n, F]`:
  infomec, mig, dci, sap                    -> numbers (host-side convenience)
  make_infomec(factors), make_mig(factors)  -> pure fn(latents) for jit / vmap over a sweep
  beta_vae_score, factor_vae_score          -> need a dataset that renders factors
  dfa, dataset_dfa, grid_oracle, traverse_linear -> scoring traversal directions (DFA)
  classifier_oracle                         -> a trained factor classifier as the oracle
  rotation_anisotropy                       -> does an image have an orientation to read
"""
from lsx.metrics.dci import dci, dci_logistic_from_codes, scores_from_importance
from lsx.metrics.infomec import infomec, infomec_from_codes, make_infomec
from lsx.metrics.interventions import beta_vae_score, factor_vae_score
from lsx.metrics.mig import histogram_discretize, make_mig, mig, mig_from_codes
from lsx.metrics.sap import sap, sap_continuous
from lsx.metrics import suite
from lsx.metrics.directions import (dataset_dfa, dfa, factor_periods, grid_oracle,
                                    ordinal_mask, traverse_linear, variation_pairs,
                                    variation_predictability)
from lsx.metrics.oracle import (ClassifierOracle, check_oracle, classifier_oracle, make_oracle,
                                oracle_from_config,
                               oracle_info,
                               rotation_anisotropy)

__all__ = ["infomec", "make_infomec", "infomec_from_codes", "mig", "make_mig",
           "mig_from_codes", "histogram_discretize", "dci", "dci_logistic_from_codes",
           "scores_from_importance", "sap", "sap_continuous", "beta_vae_score",
           "factor_vae_score", "dfa", "dataset_dfa", "factor_periods", "grid_oracle",
           "classifier_oracle", "ClassifierOracle", "check_oracle", "make_oracle", "oracle_from_config", "oracle_info",
           "ordinal_mask", "rotation_anisotropy", "traverse_linear",
           "variation_pairs", "variation_predictability"]
