"""TrainState, optimizer and the pure train step / scanned chunk."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from lsx.objective import Objective


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array  # int32 scalar
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data: checkpoints as a plain array

  @classmethod
  def create(cls, params, optimizer, rng) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
               rng=jax.random.key_data(rng))


# adamw: decoupled weight decay (Loshchilov & Hutter); adam_l2: coupled L2, the decay
# added to the gradient before Adam's moments (torch.optim.Adam's `weight_decay`)
OPTIMIZER_HPS = {"adam": ("lr",), "adamw": ("lr", "weight_decay"),
                 "adam_l2": ("lr", "weight_decay")}


def make_optimizer(name: str = "adam", grad_clip: float = 0.0, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8, lr_decay_steps=(),
                   lr_decay_factor: float = 1.0) -> optax.GradientTransformation:
  """Adam, AdamW or Adam with coupled L2 ('adam_l2': weight_decay * params added to the
  gradient before Adam, as torch.optim.Adam(weight_decay=...)) whose learning rate (and
  weight decay) are injected hyperparameters.

  They live in `opt_state.hyperparams`, are overwritten from the traced `hp` each step
  (so a sweep can vary them) and are saved with the checkpoint. `lr_decay_steps`: a step
  decay, the learning rate multiplied by `lr_decay_factor` at each of these steps (e.g.
  (1000, 5000) and 0.2, as latentclr's configs), counted in the optimizer state.
  """
  if name not in OPTIMIZER_HPS:
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(OPTIMIZER_HPS)}.")
  decay = tuple(int(s) for s in lr_decay_steps or ())

  def build(learning_rate, weight_decay=0.0):
    if name == "adam":
      core = optax.adam(learning_rate, b1, b2, eps)
    elif name == "adamw":
      core = optax.adamw(learning_rate, b1, b2, eps, weight_decay=weight_decay)
    else:
      core = optax.chain(optax.add_decayed_weights(weight_decay),
                         optax.adam(learning_rate, b1, b2, eps))
    if decay:
      sched = optax.piecewise_constant_schedule(1.0, {s: float(lr_decay_factor) for s in decay})
      core = optax.chain(core, optax.scale_by_schedule(sched))
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


class GroupOptimizer(NamedTuple):
  """The optimizer of an objective with players: the main optimizer on every parameter
  group but the players', and one Adam per player (`lsx.objective.Player`). Its state is
  {"main": ..., <player>: ...}."""
  main: optax.GradientTransformation
  players: dict  # player name -> GradientTransformation

  def init(self, params):
    main = {k: v for k, v in params.items() if k not in self.players}
    return {"main": self.main.init(main),
            **{n: tx.init(params[n]) for n, tx in self.players.items()}}


def objective_optimizer(objective: Objective, optimizer):
  """`optimizer` for an objective without players, else a `GroupOptimizer`."""
  if not objective.players:
    return optimizer
  return GroupOptimizer(optimizer, {
      p.name: optax.inject_hyperparams(optax.adam)(learning_rate=p.lr, b1=p.b1, b2=p.b2)
      for p in objective.players})


PRECISIONS = {"float32": None, "bfloat16": jnp.bfloat16}


def _cast_floats(tree, dtype):
  return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.asarray(a).dtype,
                                                                  jnp.floating) else a, tree)


def with_compute_dtype(loss: Callable, dtype) -> Callable:
  """`loss` computed in `dtype` (e.g. bfloat16): floating parameters and batch are cast
  on the way in, the loss and its aux back to float32 on the way out. Parameters, their
  gradients (through the cast) and the optimizer state stay float32 (mixed precision as
  in big_vision and maxtext). dtype None: `loss` itself."""
  if dtype is None:
    return loss

  def cast_loss(params, batch, rng, hp):
    value, aux = loss(_cast_floats(params, dtype), _cast_floats(batch, dtype), rng, hp)
    return _cast_floats(value, jnp.float32), _cast_floats(aux, jnp.float32)
  return cast_loss


def make_train_step(objective: Objective, optimizer, compute_dtype=None) -> Callable:
  """Pure `step(state, hp, batch, rng) -> (state, metrics)` for an `Objective`.

  `compute_dtype` (e.g. jnp.bfloat16): the losses are computed in it, parameters and
  optimizer state stay float32 (`with_compute_dtype`).

  A non-finite loss or gradient leaves the state unchanged (the update is skipped) and
  sets `metrics["nonfinite"]`; the host loop stops on it, so nothing bad is saved. With
  players, each group is updated from the same parameters by its own loss's gradient
  (`optimizer` is then the `objective_optimizer`).
  """
  if not isinstance(objective, Objective):
    raise TypeError(f"make_train_step needs an lsx.objective.Objective, got "
                    f"{type(objective).__name__}; wrap a loss as Objective(name, init, loss).")
  if compute_dtype is not None:
    import dataclasses
    objective = dataclasses.replace(
        objective, loss=with_compute_dtype(objective.loss, compute_dtype),
        players=tuple(dataclasses.replace(p, loss=with_compute_dtype(p.loss, compute_dtype))
                      for p in objective.players))
  if objective.players:
    return _make_player_step(objective, optimizer)
  loss_fn = objective.loss

  def step(state: TrainState, hp, batch, rng):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng, hp)
    aux = dict(aux)
    post = aux.pop("_post", None)
    gnorm = optax.global_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    opt_state = _set_opt_hparams(state.opt_state, hp)
    updates, new_opt = optimizer.update(grads, opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    if objective.post_update is not None:
      new_params = objective.post_update(new_params, post, hp)
    return _commit(state, ok, new_params, new_opt), {"loss": loss, "grad_norm": gnorm,
                                                     "nonfinite": ~ok, **aux}

  return step


def _commit(state, ok, new_params, new_opt):
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
  return state.replace(step=state.step + ok.astype(jnp.int32),
                       params=keep(new_params, state.params),
                       opt_state=keep(new_opt, state.opt_state))


def _make_player_step(objective: Objective, optimizer: GroupOptimizer) -> Callable:
  players = objective.players
  names = {p.name for p in players}

  def step(state: TrainState, hp, batch, rng):
    params = state.params
    main = {k: v for k, v in params.items() if k not in names}
    fixed = {n: params[n] for n in names}
    main_loss = lambda mp: objective.loss({**mp, **fixed}, batch, rng, hp)
    (loss, aux), g_main = jax.value_and_grad(main_loss, has_aux=True)(main)
    opt = state.opt_state
    upd, new_opt = optimizer.main.update(g_main, _set_opt_hparams(opt["main"], hp), main)
    new_params = dict(optax.apply_updates(main, upd))
    new_opt = {"main": new_opt}
    gnorm = optax.global_norm(g_main)
    ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    metrics = {"loss": loss, "grad_norm": gnorm, **aux}
    for p in players:
      own = lambda pp, p=p: p.loss({**params, p.name: pp}, batch, rng, hp)
      (lp, aux_p), g = jax.value_and_grad(own, has_aux=True)(params[p.name])
      hps = dict(opt[p.name].hyperparams, learning_rate=jnp.asarray(hp[p.lr_key], jnp.float32))
      upd, new_opt[p.name] = optimizer.players[p.name].update(
          g, opt[p.name]._replace(hyperparams=hps), params[p.name])
      new_params[p.name] = optax.apply_updates(params[p.name], upd)
      gn = optax.global_norm(g)
      ok = ok & jnp.isfinite(lp) & jnp.isfinite(gn)
      metrics.update({f"{p.name}_loss": lp, f"{p.name}_grad_norm": gn, **aux_p})
    return _commit(state, ok, new_params, new_opt), {**metrics, "nonfinite": ~ok}

  return step


def make_shared_chunk(step: Callable, sample_at: Callable, batch_size: int, num_steps: int,
                      lift: Callable):
  """A sweep's chunk whose members read the same batches: `chunk(states, hp)` over
  stacked states. Step t's batch is `sample_at(t, n)` -- drawn once per step, outside
  the members' lift (`jax.vmap` or a `lax.map` form), then every member's step on it. t
  is the members' common step count (the largest: a diverged member stops counting). A
  single run with the same `sample_at` (`make_train_chunk(sample_at=...)`) reads the
  same batches, so member i equals its run alone."""
  def chunk(states, hp):
    def body(carry, _):
      states, t = carry
      batch, _ = sample_at(t, batch_size)

      def one(state, hp_i):
        rng, _, k_loss = jax.random.split(jax.random.wrap_key_data(state.rng), 3)
        return step(state.replace(rng=jax.random.key_data(rng)), hp_i, batch, k_loss)
      states, metrics = lift(one)(states, hp)
      return (states, t + 1), metrics

    (states, _), metrics = jax.lax.scan(body, (states, jnp.max(states.step)), None,
                                        length=num_steps)
    return states, jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), metrics)  # [members, steps]
  return chunk


def make_train_chunk(step: Callable, sample: Callable, batch_size: int, num_steps: int,
                     constrain_batch: Callable | None = None, sample_at: Callable | None = None):
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

  if sample_at is not None:  # batches keyed by the step count (make_shared_chunk's)
    def keyed_chunk(state: TrainState, hp):
      def body(state, _):
        batch, _ = sample_at(state.step, batch_size)
        batch = batch if constrain_batch is None else constrain_batch(batch)
        rng, _, k_loss = jax.random.split(jax.random.wrap_key_data(state.rng), 3)
        return step(state.replace(rng=jax.random.key_data(rng)), hp, batch, k_loss)
      return jax.lax.scan(body, state, None, length=num_steps)
    return keyed_chunk

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
