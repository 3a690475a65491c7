"""Sparse autoencoders on the h-space of the sprites denoiser (Revelio-style features of a
diffusion U-Net at one timestep).

  python -m experiments.train --config configs/diffusion_sprites.py     # the denoiser first
  python -m experiments.train --config configs/sae_unet.py               # TopK on h at t = 500
  python -m experiments.train --config configs/sae_unet.py:jumprelu      # or relu, batchtopk, mp

Activations: h, the U-Net's middle-block output (8 x 8 x 64 on 32 x 32 sprites), of freshly
rendered sprites noised to `source.t`; with `source.pool='positions'` each of the 64
positions' 64-channel vectors is one activation (its image's factors alongside), with
'mean' one per image, pooled. metrics.json holds the SAE scores and, with
eval.disentanglement, InfoMEC / MIG / DCI of the codes against the factors (docs/sae.md).
"""
from configs import common


def get_config(arg: str = ""):
  c, parts = common.sae_base(arg, "unet", dict(kind="denoiser",
                                               workdir="workdirs/diffusion_sprites", t=500,
                                               pool="positions", data_seed=0))
  c.source.normalize = True
  c.sae.update(max_width=512, k_max=16, aux_k=64, dead_tokens=50000, median_samples=2048)
  c.hp.update(k=8.0, width=512.0)
  c.eval.samples = 8192
  c.train.update(steps=2000, batch_size=512, chunk=100, ckpt_every=500)
  if "smoke" in parts:
    c.source.update(workdir="workdirs/diffusion_smoke", t=5)
  return common.sae_finish(c, parts, sweep_k=(4, 8, 16))
