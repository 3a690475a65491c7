"""Latent-space comparison at sweep scale: the member x member matrix as one program
against one pair, measured side by side.

  python benchmarks/similarity_speed.py [--members 16 --samples 10000 --anchors 300]

Every pair gets lsx.compare_spaces's measures (k-NN Jaccard@10 and MRR on the first --retrieval
samples, matched cosine and linear CKA on all) on absolute and relative representations.
Rows: the measures from given codes [members, samples, d], with the relative
representations formed densely ([n, anchors] per member, the textbook way) and from their
rank-d factors (lsx.compare_spaces.relative_pair_table, what lsx runs); then the whole job from
images (encode the samples with every member's conv encoder, then the factored measures),
as a user runs it on a sweep. Ratio: matrix time / one-pair time (the matrix does
members^2 pairs).
"""
import argparse
import time

import jax
import jax.numpy as jnp

from lsx import compare_spaces as compare, data, models, similarity as ls


def best(fn, args, rounds):
  jax.block_until_ready(fn(*args))
  ts = []
  for _ in range(rounds):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t)
  return min(ts)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--members", type=int, default=16)
  ap.add_argument("--samples", type=int, default=10000)
  ap.add_argument("--anchors", type=int, default=300)
  ap.add_argument("--latent", type=int, default=10)
  ap.add_argument("--retrieval", type=int, default=2000)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--skip-dense", action="store_true", help="skip the dense-relative rows")
  a = ap.parse_args()
  m, r = a.members, a.retrieval
  codes = jax.random.normal(jax.random.key(0), (m, a.samples, a.latent))
  idx = ls.choose_anchors(a.anchors, "random", n=a.samples, rng=jax.random.key(1))
  dense_rel = lambda c: jax.vmap(lambda z: ls.relative_projection(z, z[idx]))(c)
  dense = jax.jit(lambda c: jnp.stack([compare.pair_table(c, r),
                                       compare.pair_table(dense_rel(c), r)]))
  factored = jax.jit(lambda c: jnp.stack([compare.pair_table(c, r),
                                          compare.relative_pair_table(c, idx, r)]))
  rows = []
  if not a.skip_dense:
    rows.append(("codes given, relative formed densely", best(dense, (codes[:2],), a.rounds),
                 best(dense, (codes,), a.rounds)))
  rows.append(("codes given, relative from rank-d factors (lsx)",
               best(factored, (codes[:2],), a.rounds), best(factored, (codes,), a.rounds)))
  # the whole job from images: every member encodes the same samples, then the measures
  ds = data.get_dataset("sprites", size=64)
  images = ds.sample(jax.random.key(2), a.samples)[0]
  model = models.make_autoencoder(ds.image_shape, a.latent, "conv")
  params = jax.vmap(model.init)(jax.random.split(jax.random.key(3), m))
  job = lambda p: factored(compare.encode_members(model, p, images))
  take = lambda k: jax.tree.map(lambda x: x[:k], params)
  rows.append(("from images: encode with every member + measures (lsx)",
               best(job, (take(2),), a.rounds), best(job, (params,), a.rounds)))
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{jax.device_count()} device(s); {a.samples} samples, {a.anchors} anchors, "
        f"d={a.latent}, retrieval {r}")
  print(f"| what | one pair (2 members) s | {m} x {m} = {m * m} pairs s | ratio matrix/pair |")
  print("| --- | --- | --- | --- |")
  for name, one, full in rows:
    print(f"| {name} | {one:.3f} | {full:.3f} | {full / one:.1f} |")


if __name__ == "__main__":
  main()
