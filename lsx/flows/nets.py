"""The networks of the potential flows (`lsx.flows`): K potentials u_k(z, t) in lsx's form
and the public code's (PDETraversal @82083f5 lib/WavePDE.py `MLP`), the wave speed, and
the frame classifier R of the post-hoc objective in lsx's form and the public
reconstructor's (models/vae.py `ConvEncoder2`). Each is tested against numpy written from
its formulas (tests/test_flows.py)."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from lsx.nn.conv import conv4s2


def time_embedding(t, dim: int = 16, base: float = 1000.0):
  """Sinusoidal embedding of scalar time t -> [2 * (dim // 2)]: sin and cos of t * f_i,
  f_i = base^(-i / (dim // 2 - 1)) (lsx's potentials: dim 16, base 1,000; the public
  potentials: dim = the latent width, base 10,000)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(float(base)) * jnp.arange(half) / max(half - 1, 1))
  a = jnp.asarray(t, jnp.float32) * freqs
  return jnp.concatenate([jnp.sin(a), jnp.cos(a)])


def torch_linear_init(fan_in: int):
  """PyTorch's default nn.Linear / nn.Conv2d initialization, for weights and biases alike:
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5))."""
  bound = 1.0 / math.sqrt(max(int(fan_in), 1))
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


POTENTIAL_NETS = ("lsx", "reference")


class Potentials(nn.Module):
  """K scalar potentials u_k(z, t), evaluated for one (z [d], t, k); `output` 'tanh'
  bounds u_k to (-1, 1) (the paper's MLP), 'linear' leaves it unbounded.

  `net` 'lsx': h = tanh(W1 z + b1 + e(t)), h = tanh(W2 h + b2), u = w3 h, with one time
  branch e(t) = GELU(Dense(16-dim embedding, base 1,000)) shared by all K potentials,
  LeCun-normal weights and zero biases.
  `net` 'reference' (the public MLP, PDETraversal @82083f5 lib/WavePDE.py `MLP`): per
  potential h = tanh(W_x z + b_x); e(t) = W_t2 GELU(W_t1 pe(t) + b_t1) + b_t2 with pe the
  d-dimensional embedding of base 10,000; h = tanh(W_f (h + e(t)) + b_f);
  u = tanh(w_o h + b_o): its own time branch each, added after the first tanh, an output
  bias, exact (erf) GELU, PyTorch's default initialization; width d (needs even d).
  `weight_init` (lsx net): 'per_potential' (LeCun-normal with each potential's own fan-in) or
  'stacked' (the fan-in of all K potentials together, lsx's former init)."""
  num: int
  hidden: int
  time_dim: int = 16
  output: str = "tanh"
  net: str = "lsx"
  weight_init: str = "per_potential"

  def _stack(self, name, shape, init):
    return self.param(name, init, (self.num,) + tuple(shape))

  @nn.compact
  def __call__(self, z, t, k):
    d = z.shape[-1]
    if self.net == "reference":
      h_dim = self.hidden
      lin = lambda name, fan_in, fan_out: (
          self._stack(f"{name}_w", (fan_in, fan_out), torch_linear_init(fan_in))[k],
          self._stack(f"{name}_b", (fan_out,), torch_linear_init(fan_in))[k])
      wx, bx = lin("x", d, h_dim)
      wt1, bt1 = lin("time1", h_dim, h_dim)
      wt2, bt2 = lin("time2", h_dim, h_dim)
      wf, bf = lin("fusion", h_dim, h_dim)
      wo, bo = lin("out", h_dim, 1)
      h = jnp.tanh(z @ wx + bx)
      e = nn.gelu(time_embedding(t, h_dim, 10000.0) @ wt1 + bt1, approximate=False) @ wt2 + bt2
      h = jnp.tanh((h + e) @ wf + bf)
      u = (h @ wo + bo)[0]
      return jnp.tanh(u) if self.output == "tanh" else u
    emb = nn.gelu(nn.Dense(self.hidden)(time_embedding(t, self.time_dim)))
    # one MLP per potential: stacked weights indexed by k (vmap over potentials is free),
    # each initialized with its own fan-in ('per_potential': axis 0 is a batch axis);
    # 'stacked' (lsx before 2026-12-04) took the K potentials as one fan-in, K x in it:
    # every layer's std 1/sqrt(K) too small, the velocity ~K^(3/2) x (64 x at K = 16)
    init = nn.initializers.lecun_normal(batch_axis=(0,) if self.weight_init == "per_potential" else ())
    w1 = self.param("w1", init, (self.num, d, self.hidden))
    b1 = self.param("b1", nn.initializers.zeros, (self.num, self.hidden))
    w2 = self.param("w2", init, (self.num, self.hidden, self.hidden))
    b2 = self.param("b2", nn.initializers.zeros, (self.num, self.hidden))
    w3 = self.param("w3", init, (self.num, self.hidden, 1))
    h = jnp.tanh(z @ w1[k] + b1[k] + emb)
    h = jnp.tanh(h @ w2[k] + b2[k])
    u = (h @ w3[k])[0]
    return jnp.tanh(u) if self.output == "tanh" else u


SPEEDS = ("log", "direct")


class Flow(NamedTuple):
  """Pure functions of `params = {"net": ..., "log_c" | "c": [K]}`."""
  init: Callable
  potential: Callable  # (params, z [d], t, k) -> scalar
  num: int
  dim: int

  def speed(self, params, k):
    """The wave speed c_k: exp(log_c) (lsx) or the parameter c itself (the public code)."""
    return params["c"][k] if "c" in params else jnp.exp(params["log_c"][k])


FLOW_OUTPUTS = ("linear", "tanh")
JVP_REDUCTIONS = ("sum", "mean")


POTENTIAL_INITS = ("per_potential", "stacked")


def make_flow(dim: int, num: int, hidden: int | None = None, output: str = "tanh",
              net: str = "lsx", speed: str = "log", init: str = "per_potential") -> Flow:
  """K potentials on a d-dimensional latent space. `output`: 'tanh' (u_k in (-1, 1), as
  the paper's MLP, whose last layer is a tanh: a bounded potential cannot grow its slopes
  without limit) or 'linear' (unbounded; lsx's default before 2026-11-24). `net`: the
  potentials' network ('lsx' | 'reference', `Potentials`); `speed`: the wave speed learned
  as log c ('log', lsx) or as c itself ('direct', the public code; init 1 either way);
  `init`: the lsx net's initialization (`Potentials`)."""
  if init not in POTENTIAL_INITS:
    raise ValueError(f"flow potential init must be one of {POTENTIAL_INITS}, got {init!r}.")
  if output not in FLOW_OUTPUTS:
    raise ValueError(f"flow output must be one of {FLOW_OUTPUTS}, got {output!r}.")
  if net not in POTENTIAL_NETS:
    raise ValueError(f"flow potential net must be one of {POTENTIAL_NETS}, got {net!r}.")
  if speed not in SPEEDS:
    raise ValueError(f"flow wave speed must be one of {SPEEDS}, got {speed!r}.")
  width = int(hidden or dim)
  if net == "reference" and width % 2:
    raise ValueError(f"the reference potentials embed time in their width ({width}), which "
                     f"must be even (sin and cos halves); set flows.hidden to an even width.")
  pot = Potentials(int(num), width, output=output, net=net, weight_init=init)

  def init_params(rng):
    p = pot.init(rng, jnp.zeros((dim,)), 0.0, 0)["params"]
    c = {"c": jnp.ones((num,))} if speed == "direct" else {"log_c": jnp.zeros((num,))}
    return {"net": p, **c}

  def potential(params, z, t, k):
    return pot.apply({"params": params["net"]}, z, t, k)

  return Flow(init_params, potential, int(num), int(dim))


CLASSIFIERS = ("mlp", "conv")


class FrameClassifier(nn.Module):
  """R(x_a, x_b) -> logits over the K potentials, from two consecutive decoded frames.

  `kind` 'mlp' (lsx): Dense(hidden) -> ReLU -> Dense(K) on [x_a, x_b - x_a] flattened.
  `kind` 'conv' (the public reconstructor of the VAE experiments, PDETraversal @82083f5
  models/vae.py `ConvEncoder2`, n_cin = 2 channels): on the pair stacked along channels,
  Conv(w, 4, stride 2, pad 1) -> ReLU -> Conv(2w, 4, 2, 1) -> ReLU -> Conv(3w, kernel the
  remaining H/4 x W/4, valid) -> ReLU -> Conv(2w, 1) -> ReLU -> Conv(2w, 1); a mean and a
  log-variance head of `num` logits each, and logits = mean + eps exp(logvar / 2) with
  eps ~ N(0, I) (reparameterized; `rng` required). The public code sets w = `num` = the
  latent width (s_dim); PyTorch's default initialization."""
  num: int
  hidden: int = 128
  kind: str = "mlp"

  @nn.compact
  def __call__(self, xa, xb, rng=None):
    b = xa.shape[0]
    if self.kind == "mlp":
      x = jnp.concatenate([xa.reshape(b, -1), (xb - xa).reshape(b, -1)], 1)
      return nn.Dense(self.num)(nn.relu(nn.Dense(self.hidden)(x)))
    if rng is None:
      raise ValueError("the conv frame classifier samples its logits: pass an rng.")
    w = self.hidden
    x = jnp.concatenate([xa, xb], -1)

    def param(name, shape, fan_in):
      return self.param(name, torch_linear_init(fan_in), shape)

    # the stride-2 4x4 convolutions as GEMMs (lsx.nn.conv: same function, fast on XLA:CPU)
    for i, feat in enumerate((w, 2 * w)):
      c = x.shape[-1]
      x = nn.relu(conv4s2(x, param(f"conv{i}_kernel", (4, 4, c, feat), 16 * c),
                          param(f"conv{i}_bias", (feat,), 16 * c)))
    # a convolution whose kernel covers the whole remaining map (valid) is a dense layer
    x = x.reshape(b, -1)
    for i, feat in enumerate((3 * w, 2 * w, 2 * w)):
      n = x.shape[-1]
      x = x @ param(f"dense{i}_kernel", (n, feat), n) + param(f"dense{i}_bias", (feat,), n)
      x = nn.relu(x) if i < 2 else x
    dense = lambda name: nn.Dense(self.num, name=name, kernel_init=torch_linear_init(x.shape[-1]),
                                  bias_init=torch_linear_init(x.shape[-1]))
    mean, log_var = dense("means")(x), dense("log_var")(x)
    return mean + jax.random.normal(rng, mean.shape) * jnp.exp(0.5 * log_var)


def frame_classifier(flow: Flow, classifier: str = "mlp", width: int = 0) -> FrameClassifier:
  """The frame classifier R of a flow objective: 'mlp' (lsx; K logits, width 128 by
  default) or 'conv' (the public reconstructor: d logits, reparameterized, width d by
  default); `width` 0 takes the form's default."""
  if classifier not in CLASSIFIERS:
    raise ValueError(f"flows classifier must be one of {CLASSIFIERS}, got {classifier!r}.")
  if int(width) < 0:
    raise ValueError(f"classifier_width must be >= 0 (0: the form's default), got {width}.")
  if classifier == "conv":
    return FrameClassifier(flow.dim, int(width) or flow.dim, kind="conv")
  return FrameClassifier(flow.num, int(width) or 128, kind="mlp")
