"""The objective protocol every family trains through.

An `Objective` is a pair of pure functions and the hyperparameters they read:

  init(rng) -> params                                  the trained parameters (a pytree)
  loss(params, batch, rng, hp) -> (scalar, aux dict)   minimized over params

`hp` is a dict of arrays (traced): a sweep stacks it along a member axis and vmaps the
step, so every weight an objective reads must be in `hp_defaults`, never a Python float
in a closure. Autoencoders (`lsx.models`), direction discovery (`lsx.directions`) and
potential flows (`lsx.flows`) all return this type, and `lsx.train` trains any of them.

Two-player objectives (an adversary or a critic with its own parameters and optimizer,
e.g. FactorVAE's discriminator) add `Player`s: `params[player.name]` is trained on the
player's own loss with its own optimizer, and the main loss's gradient never reaches it.
Both updates are computed from the same parameters (simultaneous gradient steps).

Objectives with buffers or constraints (a sparse autoencoder's dead-latent counters and
unit-norm decoder rows) add `post_update(params, post, hp) -> params`, applied after each
optimizer step; `post` is what the loss returned under the aux key "_post" (not logged).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping


@dataclasses.dataclass(frozen=True, eq=False)
class Player:
  """A parameter group `params[name]` trained on `loss` with its own Adam/AdamW.

  Its learning rate is the traced hyperparameter `<name>_lr` (sweepable like any other);
  `b1`, `b2` are static optimizer settings."""
  name: str
  loss: Callable  # (params, batch, rng, hp) -> (scalar, aux); differentiated w.r.t. params[name]
  lr: float = 1e-4
  b1: float = 0.9
  b2: float = 0.999

  @property
  def lr_key(self) -> str:
    return f"{self.name}_lr"


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """What a family trains: `init`, `loss`, the traced hyperparameters with defaults.

  `info` carries what the objective's users need besides training (the autoencoder it
  trains, the bottleneck it needs, ...). Compared by identity, so a compiled step can be
  cached per objective."""
  name: str
  init: Callable[[Any], Any]
  loss: Callable
  hp_defaults: Mapping[str, float] = dataclasses.field(default_factory=dict)
  players: tuple[Player, ...] = ()
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  post_update: Callable | None = None  # (params, aux["_post"], hp) -> params, after a step

  def __post_init__(self):
    names = [p.name for p in self.players]
    if len(set(names)) != len(names):
      raise ValueError(f"objective {self.name!r}: player names {names} repeat.")

  def all_hp_defaults(self) -> dict:
    """hp_defaults plus each player's learning rate."""
    out = dict(self.hp_defaults)
    out.update({p.lr_key: p.lr for p in self.players})
    return out

  def __getattr__(self, key):  # `objective.bottleneck` etc. from info
    info = self.__dict__.get("info", {})
    if key in info:
      return info[key]
    raise AttributeError(key)
