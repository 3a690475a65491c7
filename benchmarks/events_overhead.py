"""What TensorBoard event files cost the main job: steps/s with train.tensorboard on and off.

  python benchmarks/events_overhead.py                   # the main job's config, 400 steps
  python benchmarks/events_overhead.py --steps 1000 --rounds 3

Trains configs/betavae_sprites.py (the README's main job) in a fresh temporary workdir
with the event files on (lsx.train.events, tensorboardX) and off, alternating, --rounds
times each; the first run of the process compiles and is not timed. Each row is the
training loop's steps/s as the engine reports it (compile time excluded); prints the
medians and their ratio. The figures at the end of a run (and their images in the event
files) are left out with write_figures=False: the loop's cost is what is measured.
"""
from __future__ import annotations

import argparse
import re
import statistics
import tempfile

import jax


def run(tensorboard: bool, steps: int) -> float:
  from lsx import runs
  from lsx.train import config as config_lib
  c = config_lib.load_config("configs/betavae_sprites.py")
  config_lib.set_fields(c, **{"train.steps": steps, "train.tensorboard": tensorboard,
                              "train.ckpt_every": steps, "train.log_every_s": 1e9})
  lines = []
  with tempfile.TemporaryDirectory() as wd:
    runs.train(c, wd, print_fn=lines.append, write_figures=False)
  rate = [float(m.group(1)) for s in lines for m in [re.search(r"\| ([\d.]+) steps/s", s)] if m]
  return rate[-1]


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=400)
  ap.add_argument("--rounds", type=int, default=3)
  a = ap.parse_args()
  from lsx.train import events
  if not events.available():
    raise SystemExit(events.INSTALL)
  run(False, 100)  # compile (the persistent cache serves the rest)
  rates = {True: [], False: []}
  for _ in range(a.rounds):
    for on in (True, False):
      rates[on].append(run(on, a.steps))
  on, off = statistics.median(rates[True]), statistics.median(rates[False])
  print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}; main job, "
        f"{a.steps} steps, {a.rounds} rounds (median)")
  print("| event files | steps/s (median) | runs |\n| --- | --- | --- |")
  print(f"| off | {off:.2f} | {', '.join(f'{r:.2f}' for r in rates[False])} |")
  print(f"| on | {on:.2f} | {', '.join(f'{r:.2f}' for r in rates[True])} |")
  print(f"ratio on / off: {on / off:.3f}")


if __name__ == "__main__":
  main()
