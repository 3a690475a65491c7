"""Latent-space comparison at sweep scale: the member x member matrix as one program
against one pair, measured side by side.

  python benchmarks/similarity_speed.py [--members 16 --samples 10000 --anchors 300]

Codes are random [members, samples, d]; every pair gets lsx.compare's measures (k-NN
Jaccard@10 and MRR on the first --retrieval samples, matched cosine and linear CKA on all)
on absolute and relative representations. Prints the time of one pair, of the full
matrix, and their ratio (the matrix does members^2 pairs).
"""
import argparse
import time

import jax
import jax.numpy as jnp

from lsx import compare, similarity as ls


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--members", type=int, default=16)
  ap.add_argument("--samples", type=int, default=10000)
  ap.add_argument("--anchors", type=int, default=300)
  ap.add_argument("--latent", type=int, default=10)
  ap.add_argument("--retrieval", type=int, default=2000)
  ap.add_argument("--rounds", type=int, default=3)
  a = ap.parse_args()
  codes = jax.random.normal(jax.random.key(0), (a.members, a.samples, a.latent))
  idx = ls.choose_anchors(a.anchors, "random", n=a.samples, rng=jax.random.key(1))
  rel = lambda c: jax.vmap(lambda z: ls.relative_projection(z, z[idx]))(c)
  table = lambda c: jnp.stack([compare.pair_table(c, a.retrieval),
                               compare.pair_table(rel(c), a.retrieval)])
  def pair(x, y):  # one pair alone: both members' statistics and their measures
    st = lambda z: compare.member_stats(z, a.retrieval)
    return compare.pair_measures(st(x), st(y), a.retrieval)

  one = jax.jit(lambda x, y: jnp.stack([pair(x, y), pair(rel(x[None])[0], rel(y[None])[0])]))
  full = jax.jit(table)
  two = (codes[0], codes[1])
  jax.block_until_ready(one(*two))
  jax.block_until_ready(full(codes))
  t_one, t_full = [], []
  for _ in range(a.rounds):
    t = time.perf_counter(); jax.block_until_ready(one(*two)); t_one.append(time.perf_counter() - t)
    t = time.perf_counter(); jax.block_until_ready(full(codes)); t_full.append(time.perf_counter() - t)
  o, f = min(t_one), min(t_full)
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {jax.device_count()} device(s)")
  print(f"| what | seconds (best of {a.rounds}) |")
  print("| --- | --- |")
  print(f"| one pair, absolute + relative ({a.samples} samples, {a.anchors} anchors) | {o:.3f} |")
  print(f"| {a.members} x {a.members} = {a.members ** 2} pairs as one program | {f:.3f} |")
  print(f"ratio matrix/pair: {f / o:.1f} (pairs: {a.members ** 2}; per pair {f / o / a.members ** 2:.3f}x)")


if __name__ == "__main__":
  main()
