"""Shared config skeleton. Every config file calls `base_config()` then `finalize()`."""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.workdir = "workdirs/run"
  # data: procedural 'sprites'/'scenes', or any TFDS image dataset by name
  c.data = dict(name="sprites", size=64, split="train", data_dir="", max_examples=0,
                image_key="image")
  # model: arch 'conv' (Locatello et al. 2019) or 'mlp'; bottleneck '' = objective's own
  # hidden: MLP widths (empty = Locatello's 1200s); image_shape: empty = the data's
  # num_values: codebook size per latent (quantized bottleneck); style_widths: 'style' decoder
  c.model = dict(arch="conv", latent_dim=10, bottleneck="", conv_impl="gemm", image_shape=(),
                 hidden=(), num_values=10, style_widths=())
  c.objective = dict(name="beta_vae", likelihood="bernoulli", iwae_k=5)
  # traced hyperparameters (arrays inside the step: a sweep may vary them)
  c.hp = ml_collections.ConfigDict({"beta": 1.0, "lr": 1e-4})
  c.optim = dict(name="adam", grad_clip=0.0)
  c.train = dict(steps=2000, batch_size=64, chunk=50, ckpt_every=500, keep=2, log_every_s=5.0)
  c.viz = dict(num_anchors=3, num_steps=9, num_sigma=3.0)
  return c


def finalize(config, arg: str = ""):
  """`arg` 'smoke' shrinks the run for tests; the config is locked against typos."""
  if arg == "smoke":
    config.train.steps = 4
    config.train.chunk = 2
    config.train.ckpt_every = 2
    config.model.latent_dim = 4
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; known: 'smoke'.")
  config.lock()
  return config
