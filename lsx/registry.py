"""Registries: objectives, datasets, direction methods and training families by name.

A registry maps a name to a factory. Options reach the factory as keyword arguments, and
options the factory does not take are refused with the names it does take, so no module
keeps a whitelist of options and a new entry is one decorated function:

    from lsx.models import objectives

    @objectives.REGISTRY.register("my_vae", hp={"beta": 1.0, "gamma": 0.5})
    def my_vae(model, *, likelihood="bernoulli", **_):
      ...  # return loss(params, images, rng, hp) -> (scalar, aux)
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Entry:
  name: str
  factory: Callable
  info: dict  # what the registry's users read (hp defaults, a bottleneck, a kind, ...)

  def options(self) -> tuple[str, ...]:
    """The keyword options the factory takes (empty when it takes **kwargs only)."""
    sig = inspect.signature(self.factory)
    return tuple(n for n, p in sig.parameters.items()
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))

  def accepts_any(self) -> bool:
    return any(p.kind == p.VAR_KEYWORD
               for p in inspect.signature(self.factory).parameters.values())


class Registry:
  """Name -> factory. `what` names the kind of thing in error messages."""

  def __init__(self, what: str):
    self.what = what
    self._entries: dict[str, Entry] = {}

  def register(self, name: str, **info) -> Callable:
    def deco(factory):
      if name in self._entries:
        raise ValueError(f"{self.what} {name!r} is registered twice.")
      self._entries[name] = Entry(name, factory, dict(info))
      return factory
    return deco

  def __contains__(self, name) -> bool:
    return name in self._entries

  def __iter__(self):
    return iter(self._entries)

  def names(self) -> list[str]:
    return sorted(self._entries)

  def get(self, name: str) -> Entry:
    if name not in self._entries:
      raise ValueError(f"Unknown {self.what} {name!r}; choose one of {self.names()}.")
    return self._entries[name]

  def build(self, name: str, *args, options: dict | None = None, strict: bool = True) -> Any:
    """`factory(*args, **options)`. `strict`: an option the factory does not take is an
    error naming the ones it takes; otherwise such options are dropped (shared config
    sections whose fields belong to several entries, like `config.data`)."""
    entry = self.get(name)
    options = dict(options or {})
    if not entry.accepts_any():
      known = entry.options()
      extra = sorted(set(options) - set(known))
      if extra and strict:
        raise ValueError(f"{self.what} {name!r} takes no option {extra}; its options are "
                         f"{sorted(k for k in known if k not in ('model', 'dataset'))}.")
      options = {k: v for k, v in options.items() if k in known}
    return entry.factory(*args, **options)
