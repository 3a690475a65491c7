"""A denoiser (ε-prediction U-Net, DDPM's linear schedule) on the built-in sprites.

  python -m experiments.train --config configs/diffusion_sprites.py
  python -m experiments.train --config configs/diffusion_sprites.py:sweep   # 3 seeds, one program
  python -m experiments.train --config configs/diffusion_sprites.py:smoke   # tests

Sections: data (the built-in dataset and its image size), diffusion (timesteps: the
schedule's length T; widths: the U-Net's stem width then one per level, the last one h's
channels; emb_dim: the timestep embedding; sample_steps / num_samples: the DDIM samples
of samples.png and denoising.png; conv_impl: the convolutions' form,
lsx.diffusion.family.conv_forms), hp (beta_start,
beta_end: the linear schedule's ends, traced; ema_decay; lr). The images are 32 x 32 so
that one seed trains in about an hour on a 2-core CPU (docs/diffusion.md).
"""
import ml_collections

from configs import common


def get_config(arg: str = ""):
  return build(arg, "sprites", 1)


def build(arg: str, data: str, channels: int):
  del channels
  parts = common.check_arg(arg, ("smoke", "sweep"))
  c = common.run_config()
  c.family = "diffusion"
  c.workdir = f"workdirs/diffusion_{data}"
  c.data = ml_collections.ConfigDict({"name": data, "size": 32})
  c.diffusion = ml_collections.ConfigDict(dict(
      timesteps=1000, widths=(32, 64, 64), emb_dim=128, sample_steps=50, num_samples=16,
      conv_impl="native"))
  c.hp = dict(beta_start=1e-4, beta_end=0.02, ema_decay=0.999, lr=2e-4)
  c.optim.grad_clip = 1.0
  c.train.update(steps=6000, batch_size=32, chunk=50, ckpt_every=500, log_every_s=30.0)
  if "sweep" in parts:
    c.workdir += "_sweep"
    c.sweep.seed = (0, 1, 2)
  if "smoke" in parts:
    c.diffusion.update(timesteps=20, widths=(8, 16), emb_dim=16, sample_steps=4, num_samples=4)
    c.data.size = 16
    c.train.update(steps=4, batch_size=4, chunk=2, ckpt_every=2, log_every_s=0.0)
  c.lock()
  return c
