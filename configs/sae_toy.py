"""Sparse autoencoders on a toy model of superposition (known ground-truth features).

  python -m experiments.train --config configs/sae_toy.py                 # TopK
  python -m experiments.train --config configs/sae_toy.py:jumprelu        # or relu, batchtopk, mp
  python -m experiments.train --config configs/sae_toy.py:sweep           # k x seed, one program

512 true features (unit directions in 64 dimensions), ~4 active per sample with
magnitudes U(0, 1]: the SAE's decoder rows should recover the features (metrics.json:
recovered, mmcs; docs/sae.md).
"""
from configs import common


def get_config(arg: str = ""):
  # source: num_features unit directions in dim dimensions, `active` expected per sample,
  # feature frequency power-law `decay`
  c, parts = common.sae_base(arg, "toy", dict(kind="toy", num_features=512, dim=64, active=4.0,
                                              decay=0.0, feature_seed=0, data_seed=0))
  c.sae.update(max_width=512, k_max=8, aux_k=64, dead_tokens=20000)
  c.eval.samples = 20000
  c.hp.update(k=6.0, width=512.0)
  if c.sae.bottleneck == "relu":
    c.hp.l1_coeff = 0.1
  if c.sae.bottleneck == "jumprelu":
    # what recovers the toy's features (REPRODUCTION.md §9): inputs scaled to E||x||^2 = d,
    # the jump's kernel also reaching the pre-activations (Anthropic, January 2025) with a
    # bandwidth on the scale of the interference between features (4; the paper's 0.001
    # leaves theta behind the encoder), theta_0 = 2, and AuxK on dead latents (lsx)
    c.source.normalize = True
    c.sae.update(bandwidth=4.0, threshold_init=2.0, jump_grad="pre")
    c.hp.update(l0_coeff=1.5, aux_coeff=1.0 / 32.0, lr=3e-3)
  c.train.update(steps=6000, batch_size=1024, chunk=200, ckpt_every=1000)
  if "smoke" in parts:
    c.source.update(num_features=32, dim=8, active=2.0)
  return common.sae_finish(c, parts, sweep_k=(4, 6, 8))
