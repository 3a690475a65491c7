"""Where a sparse autoencoder's activations come from.

Every source has `dim`, `sample(rng, n) -> (x [n, dim], extra)` and `sample_at(t, n)`,
the batch of training step t (what the runner draws once per step for every member of a
sweep, so the members read the same batches):

  ToySuperposition  sparse ground-truth features compressed into fewer dimensions,
                    rendered on device from the key (known features: `true_features`)
  ModelActivations  a layer of a trained lsx autoencoder on its dataset, computed on the
                    fly (`extra`: the images' factors, for the disentanglement metrics)
  DenoiserActivations  h of a trained lsx denoiser (lsx.diffusion) at one timestep, per
                    spatial position or pooled, on noised images of its dataset
  ArrayShards       activations on disk: memory-mapped `.npy` shards read in batches
                    through a host callback, every row once per epoch in a shuffled
                    order (bounded memory: the batch and the epoch's permutation)
"""
from __future__ import annotations

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
from lsx.diffusion import family as diffusion_family, process
from lsx.records import require_run


class ToySuperposition:
  """x = sum_i s_i F_i: `num_features` unit feature directions F [num_features, dim]
  (random, fixed by `feature_seed`); feature i is active with probability p_i and then
  has magnitude U(0, 1]. p_i = `active` / num_features when `decay` = 0, else a power law
  p_i ∝ (i + 1)^-decay normalized to the same expected count (features of unequal
  frequency, as in Elhage et al. 2022's importance/sparsity toy models)."""

  def __init__(self, num_features: int = 512, dim: int = 64, active: float = 4.0,
               decay: float = 0.0, feature_seed: int = 0, data_seed: int = 0):
    if int(dim) < 1 or int(num_features) < 1:
      raise ValueError(f"toy source needs num_features >= 1 and dim >= 1, got "
                       f"{num_features}, {dim}.")
    if not 0 < active <= num_features:
      raise ValueError(f"toy source: active={active} must be in (0, num_features].")
    self.num_features, self.dim = int(num_features), int(dim)
    f = jax.random.normal(jax.random.key(feature_seed), (self.num_features, self.dim))
    self.true_features = f / jnp.linalg.norm(f, axis=-1, keepdims=True)
    w = (jnp.arange(self.num_features) + 1.0) ** (-float(decay))
    self.prob = jnp.clip(w / w.sum() * float(active), 0.0, 1.0)
    self.data_key = jax.random.key(int(data_seed))

  def coefficients(self, rng, n: int):
    k1, k2 = jax.random.split(rng)
    on = jax.random.uniform(k1, (n, self.num_features)) < self.prob
    mag = jax.random.uniform(k2, (n, self.num_features), minval=1e-3, maxval=1.0)
    return jnp.where(on, mag, 0.0)

  def sample(self, rng, n: int):
    s = self.coefficients(rng, n)
    return s @ self.true_features, s

  def sample_at(self, t, n: int):
    return self.sample(jax.random.fold_in(self.data_key, t), n)


class ModelActivations:
  """The output of `layer` of the encoder of the lsx autoencoder in `workdir` (a submodule
  name such as 'Dense_0', or 'latent' for the encoder mean) on its dataset's images."""

  def __init__(self, workdir: str, layer: str = "Dense_0", data_seed: int = 0, runs=None):
    """`runs` loads the run (lsx.runs, which builds the SAE family with itself)."""
    require_run(workdir, "an SAE's activations", ("autoencoder",), sweep=False)
    if runs is None:
      raise ValueError("ModelActivations loads its run through lsx.runs: pass runs=lsx.runs.")
    setup, state = runs.load_run(workdir)
    self.model, self.params, self.dataset = setup.model, state.params, setup.dataset
    self.layer = layer
    net = self.model.encoder_net
    known = sorted(self.params["encoder"])
    if layer != "latent" and layer not in known:
      raise ValueError(f"the encoder has no submodule {layer!r}; choose one of {known} or "
                       f"'latent'.")
    if layer == "latent":
      self.features = lambda x: self.model.represent(self.params, x)
    else:
      def feats(x):
        _, inter = net.apply({"params": self.params["encoder"]}, x,
                             capture_intermediates=lambda mdl, _: mdl.name == layer)
        return inter["intermediates"][layer]["__call__"][0].reshape(x.shape[0], -1)
      self.features = feats
    probe = jax.eval_shape(self.features, jax.ShapeDtypeStruct((1,) + tuple(self.model.image_shape),
                                                               jnp.float32))
    self.dim = int(probe.shape[-1])
    self.data_key = jax.random.key(int(data_seed))

  def sample(self, rng, n: int):
    images, factors = self.dataset.sample(rng, n)
    return self.features(images), factors

  def sample_at(self, t, n: int):
    return self.sample(jax.random.fold_in(self.data_key, t), n)


class DenoiserActivations:
  """h (the U-Net's middle-block output, lsx.diffusion) of the denoiser run in `workdir`
  on its dataset's images noised to timestep `t` (fresh noise per batch): with
  `pool='positions'` every spatial position's channel vector is one activation, as
  Revelio trains k-sparse autoencoders on diffusion U-Net features per location
  (`extra`: the image's factors, repeated per position); with `pool='mean'` one
  activation per image, h averaged over positions (`extra`: its factors)."""

  POOLS = ("positions", "mean")

  def __init__(self, workdir: str, t: int = 500, pool: str = "positions", data_seed: int = 0,
               runs=None):
    require_run(workdir, "an SAE's denoiser activations", ("diffusion",), sweep=False)
    if runs is None:
      raise ValueError("DenoiserActivations loads its run through lsx.runs: pass runs=lsx.runs.")
    if pool not in self.POOLS:
      raise ValueError(f"config.source.pool must be one of {self.POOLS}, got {pool!r}.")
    setup, state = runs.load_run(workdir)
    timesteps = int(setup.config.diffusion.timesteps)
    if not 0 <= int(t) < timesteps:
      raise ValueError(f"config.source.t={t} is outside the denoiser's timesteps "
                       f"0..{timesteps - 1}.")
    self.den = diffusion_family.denoiser(setup, state.params)
    self.dataset, self.t, self.pool = setup.dataset, int(t), pool
    hh, ww, ch = self.den.h_shape
    self.positions = 1 if pool == "mean" else hh * ww
    self.dim = int(ch)
    self.data_key = jax.random.key(int(data_seed))

    def features(rng, images):
      x0 = process.to_model(images)
      x_t = process.q_sample(self.den.schedule, x0, jnp.full((x0.shape[0],), self.t),
                             jax.random.normal(rng, x0.shape))
      _, h = self.den.eps_fn(x_t, jnp.full((x0.shape[0],), self.t))
      return h.mean((1, 2)) if pool == "mean" else h.reshape(-1, self.dim)
    self.features = features

  def sample(self, rng, n: int):
    k_img, k_noise = jax.random.split(rng)
    m = -(-int(n) // self.positions)  # images whose positions cover n activations
    images, factors = self.dataset.sample(k_img, m)
    h = self.features(k_noise, images)[:n]
    return h, jnp.repeat(factors, self.positions, axis=0)[:n]

  def sample_at(self, t, n: int):
    return self.sample(jax.random.fold_in(self.data_key, t), n)


class ArrayShards:
  """Rows of memory-mapped `.npy` shards [rows, dim] (a glob or a list of paths), read
  through `jax.pure_callback`: step t takes positions t*n .. t*n+n-1 of an endless
  stream in which epoch e is a permutation (seeded by `seed` and e) of every row, so each
  row is visited once per epoch. Only the batch's rows are read from disk."""

  def __init__(self, paths, seed: int = 0, dtype=np.float32):
    files = sorted(glob.glob(paths)) if isinstance(paths, str) else list(paths)
    if not files:
      raise FileNotFoundError(f"no activation shards match {paths!r}; write them with "
                              f"numpy.save (one [rows, dim] array per file).")
    self.shards, widths = [], {}
    for f in files:
      try:
        a = np.load(f, mmap_mode="r")
      except (OSError, ValueError) as e:
        raise ValueError(f"activation shard {f} is not a readable .npy file ({e}).") from None
      if a.ndim != 2:
        raise ValueError(f"activation shard {f} has shape {a.shape}; each shard must be "
                         f"[rows, dim].")
      widths[f] = a.shape[1]
      self.shards.append(a)
    first = files[0]
    bad = [f for f in files if widths[f] != widths[first]]
    if bad:
      raise ValueError(f"activation shard {bad[0]} has width {widths[bad[0]]} but "
                       f"{first} has {widths[first]}: every shard must hold activations of "
                       f"one layer (the same dim).")
    self.dim = int(widths[first])
    self.starts = np.cumsum([0] + [a.shape[0] for a in self.shards])
    self.rows = int(self.starts[-1])
    if self.rows == 0:
      raise ValueError(f"activation shards {files[:3]} hold no rows.")
    self.seed, self.dtype = int(seed), dtype
    self._perm_cache = {}

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perm_cache:
      if len(self._perm_cache) > 2:
        self._perm_cache.clear()
      self._perm_cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
    return self._perm_cache[epoch]

  def indices(self, t: int, n: int) -> np.ndarray:
    """Global row indices of step t's batch."""
    pos = int(t) * n + np.arange(n)
    epoch, off = pos // self.rows, pos % self.rows
    out = np.empty(n, np.int64)
    for e in np.unique(epoch):
      sel = epoch == e
      out[sel] = self._perm(int(e))[off[sel]]
    return out

  def read(self, idx: np.ndarray) -> np.ndarray:
    """Rows `idx` (global), read shard by shard in sorted order."""
    order = np.argsort(idx, kind="stable")
    sidx = idx[order]
    shard = np.searchsorted(self.starts, sidx, side="right") - 1
    out = np.empty((idx.size, self.dim), self.dtype)
    for s in np.unique(shard):
      sel = shard == s
      out[order[sel]] = self.shards[s][sidx[sel] - self.starts[s]]
    return out

  def _host(self, t, n):
    return self.read(self.indices(int(t), n))

  def sample_at(self, t, n: int):
    out = jax.ShapeDtypeStruct((n, self.dim), jnp.dtype(self.dtype))
    x = jax.pure_callback(lambda tt: self._host(tt, n), out, t, vmap_method="sequential")
    return x, None

  def sample(self, rng, n: int):
    t = jax.random.randint(rng, (), 0, np.iinfo(np.int32).max)
    return self.sample_at(t, n)


class Scaled:
  """A source whose activations are multiplied by one constant `scale` (the rest of the
  source, `true_features` and the extras included, is the wrapped source's)."""

  def __init__(self, source, scale: float):
    if not np.isfinite(scale) or scale <= 0:
      raise ValueError(f"a source's scale must be a finite number > 0, got {scale}.")
    self.source, self.scale = source, float(scale)

  def __getattr__(self, name):
    return getattr(self.source, name)

  def sample(self, rng, n: int):
    x, extra = self.source.sample(rng, n)
    return x * self.scale, extra

  def sample_at(self, t, n: int):
    x, extra = self.source.sample_at(t, n)
    return x * self.scale, extra


def unit_mean_square_scale(source, n: int = 4096, seed: int = 0) -> float:
  """The constant c with E||c x||^2 = dim on `n` samples of `source` (Rajamanoharan et
  al. 2024 train on activations scaled so; SAELens' `normalize_activations`)."""
  x = np.asarray(source.sample(jax.random.key(seed), n)[0], np.float64)
  ms = float(np.mean(np.sum(x * x, -1)))
  if not ms > 0:
    raise ValueError("the source's activations are all zero: nothing to normalize.")
  return float(np.sqrt(source.dim / ms))


def make_source(spec, runs=None) -> object:
  """The source of `config.source` (kind: toy | model | arrays | denoiser; `normalize`: scaled by
  `unit_mean_square_scale`); `runs` (lsx.runs) loads a 'model' source's run."""
  src = _make_source(spec, runs)
  if spec.get("normalize", False):
    src = Scaled(src, unit_mean_square_scale(src))
  return src


def _make_source(spec, runs=None) -> object:
  kind = spec.get("kind", "toy")
  if kind == "toy":
    return ToySuperposition(int(spec.get("num_features", 512)), int(spec.get("dim", 64)),
                            float(spec.get("active", 4.0)), float(spec.get("decay", 0.0)),
                            int(spec.get("feature_seed", 0)), int(spec.get("data_seed", 0)))
  if kind in ("model", "denoiser") and (
      not spec.get("workdir") or not os.path.exists(os.path.join(spec.workdir, "config.json"))):
    raise FileNotFoundError(f"config.source.workdir={spec.get('workdir')!r} holds no trained "
                            f"run; train it first (experiments.train) or set the path.")
  if kind == "model":
    return ModelActivations(spec.workdir, spec.get("layer", "Dense_0"),
                            int(spec.get("data_seed", 0)), runs)
  if kind == "arrays":
    return ArrayShards(spec.get("paths", ""), int(spec.get("data_seed", 0)))
  if kind == "denoiser":
    return DenoiserActivations(spec.get("workdir", ""), int(spec.get("t", 500)),
                               str(spec.get("pool", "positions")),
                               int(spec.get("data_seed", 0)), runs)
  raise ValueError(f"config.source.kind must be 'toy', 'model', 'arrays' or 'denoiser', got "
                   f"{kind!r}.")
