"""TrainState, optimizer and the pure train step / scanned chunk."""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array  # int32 scalar
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data: checkpoints as a plain array

  @classmethod
  def create(cls, params, optimizer, rng) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
               rng=jax.random.key_data(rng))


OPTIMIZER_HPS = {"adam": ("lr",), "adamw": ("lr", "weight_decay")}


def make_optimizer(name: str = "adam", grad_clip: float = 0.0, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam/AdamW whose learning rate (and weight decay) are injected hyperparameters.

  They live in `opt_state.hyperparams`, are overwritten from the traced `hp` each step
  (so a sweep can vary them) and are saved with the checkpoint.
  """
  if name not in OPTIMIZER_HPS:
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(OPTIMIZER_HPS)}.")

  def build(learning_rate, weight_decay=0.0):
    core = (optax.adam(learning_rate, b1, b2, eps) if name == "adam" else
            optax.adamw(learning_rate, b1, b2, eps, weight_decay=weight_decay))
    return optax.chain(optax.clip_by_global_norm(grad_clip), core) if grad_clip > 0 else core

  if name == "adam":
    return optax.inject_hyperparams(lambda learning_rate: build(learning_rate))(learning_rate=1e-4)
  return optax.inject_hyperparams(build)(learning_rate=1e-4, weight_decay=0.0)


def _set_opt_hparams(opt_state, hp):
  hps = dict(opt_state.hyperparams)
  hps["learning_rate"] = jnp.asarray(hp["lr"], jnp.float32)
  if "weight_decay" in hps:
    hps["weight_decay"] = jnp.asarray(hp["weight_decay"], jnp.float32)
  return opt_state._replace(hyperparams=hps)


def make_train_step(objective, optimizer) -> Callable:
  """Pure `step(state, hp, batch, rng) -> (state, metrics)`.

  A non-finite loss or gradient leaves the state unchanged (the update is skipped) and
  sets `metrics["nonfinite"]`; the host loop stops on it, so nothing bad is saved.
  """
  loss_fn = objective.loss if hasattr(objective, "loss") else objective

  def step(state: TrainState, hp, batch, rng):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng, hp)
    gnorm = optax.global_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    opt_state = _set_opt_hparams(state.opt_state, hp)
    updates, new_opt = optimizer.update(grads, opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    new_state = state.replace(step=state.step + ok.astype(jnp.int32),
                              params=keep(new_params, state.params),
                              opt_state=keep(new_opt, state.opt_state))
    metrics = {"loss": loss, "grad_norm": gnorm, "nonfinite": ~ok, **aux}
    return new_state, metrics

  return step


def make_train_chunk(step: Callable, sample: Callable, batch_size: int, num_steps: int,
                     constrain_batch: Callable | None = None):
  """`chunk(state, hp) -> (state, metrics [num_steps])`: `num_steps` steps in one scan.

  Batches are drawn on device from `sample(rng, n)` (a dataset's sampler), keyed by the
  state's own rng, so the data position is part of the checkpointed state.
  `constrain_batch` (e.g. a sharding constraint over a mesh's data axis) is applied to
  each batch: data parallelism without changing the step.
  """
  def draw(rng):  # the batch of the step whose key is `rng`
    _, k_data, _ = jax.random.split(rng, 3)
    images, _ = sample(k_data, batch_size)
    return images if constrain_batch is None else constrain_batch(images)

  def chunk(state: TrainState, hp):
    # The batch of step j+1 is rendered in step j and handed over in the scan carry.
    # A loop-carried buffer is materialized, so the procedural renderer runs once per
    # step; rendered inside the step it is fused into each consumer (the encoder input,
    # the likelihood, its gradient) and run three times (an optimization barrier does not
    # stop that: XLA:CPU removes barriers before fusion). The keys are those of the
    # unpipelined loop, so the numbers are too; one extra batch per chunk is discarded.
    def body(carry, _):
      state, images = carry
      rng, _, k_loss = jax.random.split(jax.random.wrap_key_data(state.rng), 3)
      state = state.replace(rng=jax.random.key_data(rng))
      state, metrics = step(state, hp, images, k_loss)
      return (state, draw(rng)), metrics

    first = draw(jax.random.wrap_key_data(state.rng))
    (state, _), metrics = jax.lax.scan(body, (state, first), None, length=num_steps)
    return state, metrics
  return chunk
