"""PNG figures: image grids, reconstructions, latent traversals, sweep and score plots.

Every figure has labelled rows and columns (lsx.viz.labelled) and carries its labels as
PNG text (`read_labels(path)`); traversals are also written as animated GIFs.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from lsx.viz.labelled import (grid_figure, image_grid, read_labels, save_figure,  # noqa: F401
                              save_gif, to_uint8)


def save_png(array: np.ndarray, path: str, scale: int = 1) -> str:
  img = Image.fromarray(array)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  img.save(path)
  return path


def save_reconstructions(images, recons, path: str, errors=None,
                         error_name: str = "error") -> str:
  """Two labelled rows, "data" above "reconstruction"; each column titled by its image's
  reconstruction error (`errors` [n], named `error_name`) when given."""
  grid = np.stack([np.asarray(images), np.asarray(recons)])
  cols = [f"{float(e):.1f}" for e in errors] if errors is not None else []
  return save_figure(grid_figure(
      grid, row_labels=["data", "reconstruction"], col_labels=cols,
      xlabel=f"per-image {error_name}" if cols else "", title="reconstructions"), path)


def traversal_values(latents, num_steps: int = 9, num_sigma: float = 3.0):
  """Per-dimension traversal offsets over +-num_sigma * std of `latents` [n, d]: [d, S]."""
  std = np.asarray(latents).std(0)
  std = np.where(std > 1e-6, std, 1.0)
  return np.linspace(-num_sigma, num_sigma, num_steps)[None, :] * std[:, None]


def save_traversals(decode, anchors_z, path: str, latents=None, num_steps: int = 9,
                    num_sigma: float = 3.0, importance=None, importance_name: str = "KL",
                    collapsed=None, gif: bool = True) -> str:
  """Latent traversals with labelled rows and columns: one row per latent dimension
  (labelled `z<j>` and its `importance` [d], e.g. its KL or variance, rows sorted by it,
  `collapsed` [d] rows greyed and marked), for each anchor a block of `num_steps` columns
  moving that latent over +-num_sigma std (std from `latents`) around the anchor's code
  (the columns labelled in sigmas, the anchor's own column outlined). Writes the PNG and,
  with `gif`, the same traversal animated beside it (`path` with .gif).

  `decode(z [n, d]) -> images [n, H, W, C]` in [0, 1].
  """
  anchors_z = np.asarray(anchors_z)
  a, d = anchors_z.shape
  offsets = traversal_values(anchors_z if latents is None else latents, num_steps, num_sigma)
  z = np.repeat(anchors_z[:, None, None, :], d, 1).repeat(num_steps, 2)  # [a, d, S, d]
  z = z.copy()
  for j in range(d):
    z[:, j, :, j] += offsets[j]
  imgs = np.asarray(decode(z.reshape(-1, d)))
  imgs = imgs.reshape((a, d, num_steps) + imgs.shape[1:])  # [a, d, S, H, W, C]
  order = np.arange(d) if importance is None else np.argsort(-np.asarray(importance), kind="stable")
  collapsed = np.zeros(d, bool) if collapsed is None else np.asarray(collapsed, bool)
  labels = [f"z{j}" + ("" if importance is None else f"  {importance_name} "
                       f"{float(importance[j]):.2f}") + ("  (collapsed)" if collapsed[j] else "")
            for j in order]
  grid = imgs[:, order].transpose(1, 0, 2, 3, 4, 5)  # [d, a, S, H, W, C]
  grid = grid.reshape((d, a * num_steps) + imgs.shape[3:])
  sig = np.linspace(-num_sigma, num_sigma, num_steps)
  cols = [f"{x:+.1f}σ" if abs(x) > 1e-9 else "0" for x in sig] * a
  centre = [i * num_steps + num_steps // 2 for i in range(a)] if num_steps % 2 else []
  fig = grid_figure(
      grid, row_labels=labels, col_labels=cols, marked_cols=centre,
      col_groups=[(f"anchor {i + 1}", i * num_steps, (i + 1) * num_steps) for i in range(a)],
      dim_rows=[r for r, j in enumerate(order) if collapsed[j]],
      xlabel="offset of the row's latent from the anchor's code (std of the codes; "
             "outlined: the anchor)",
      title=("latent traversals" + ("" if importance is None else
                                    f", rows by {importance_name}")))
  save_figure(fig, path)
  if gif:  # frame s: every latent (rows) x every anchor (columns) at offset s
    frames = [image_grid(imgs[:, order, s].transpose(1, 0, 2, 3, 4)) / 255.0
              for s in range(num_steps)]
    save_gif(np.stack(frames), path.rsplit(".", 1)[0] + ".gif")
  return path


def save_sweep_plot(rows, axes, metrics, path: str) -> str:
  """Final metrics against each swept hyperparameter; members sharing a value (seeds)
  shown as points around their mean line. `rows`: sweep.csv's dicts."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  axes = list(axes) or ["seed"]
  metrics = list(metrics) or ["loss"]
  fig, grid = plt.subplots(len(metrics), len(axes), squeeze=False,
                           figsize=(3.6 * len(axes), 2.8 * len(metrics)))
  for r, metric in enumerate(metrics):
    for c, axis in enumerate(axes):
      ax = grid[r][c]
      xs = np.array([float(row[axis]) for row in rows])
      ys = np.array([float(row[metric]) for row in rows])
      ax.scatter(xs, ys, s=14, alpha=0.6)
      ux = np.unique(xs)
      ax.plot(ux, [ys[xs == u].mean() for u in ux], "-o", ms=3)
      if axis != "seed" and np.all(ux > 0) and ux.max() / ux.min() >= 10:
        ax.set_xscale("log")
      ax.set_xlabel(axis)
      ax.set_ylabel(metric)
  fig.tight_layout()
  save_figure(fig, path, dpi=100)
  return path


def log(message: str) -> None:
  """Progress and results of the experiments, on stderr."""
  import sys
  print(message, file=sys.stderr, flush=True)


def save_traversal_grid(frames, path: str, anchors: int = 3, row_labels=None, title: str = "",
                        step_labels=None, gif: bool = True) -> str:
  """frames [K, N, S, H, W, C] (K directions, N anchors, S steps): one labelled row per
  direction (`row_labels`, default 'direction k'), the first `anchors` anchors side by
  side as labelled column blocks (`step_labels` [S] name the steps; the middle one, the
  anchor, outlined when S is odd). With `gif`, the traversal animated beside the PNG."""
  frames = np.asarray(frames)
  k, n, s = frames.shape[:3]
  a = min(anchors, n)
  grid = frames[:, :a].reshape((k, a * s) + frames.shape[3:])
  steps = list(step_labels) if step_labels is not None else [str(i - s // 2) for i in range(s)]
  fig = grid_figure(
      grid, row_labels=list(row_labels) if row_labels is not None else
      [f"direction {i}" for i in range(k)], col_labels=steps * a,
      col_groups=[(f"anchor {i + 1}", i * s, (i + 1) * s) for i in range(a)],
      marked_cols=[i * s + s // 2 for i in range(a)] if s % 2 else [],
      xlabel="step along the traversal (outlined: the anchor)", title=title)
  save_figure(fig, path)
  if gif:
    save_gif(np.stack([image_grid(frames[:, :a, t]) / 255.0 for t in range(s)]),
             path.rsplit(".", 1)[0] + ".gif")
  return path


def save_score_plot(scored, table, path):
  """scores.png: each row's traversal scores, mean and spread over members (`table`: the
  rows' summaries {name: {score: {"mean", "std"}}})."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = list(table)
  keys = ("disentanglement", "completeness", "direction_mig", "coverage", "vp")
  fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 0.35 * len(names) + 1.6),
                           sharey=True)
  for ax, key in zip(axes, keys):
    ax.barh(range(len(names)), [table[n][key]["mean"] for n in names],
            xerr=[table[n][key]["std"] for n in names], color="tab:blue", alpha=0.8)
    for i, name in enumerate(names):
      vals = [float(r[key]) for r in scored[name]]
      ax.plot(vals, [i] * len(vals), "k.", ms=3)
    ax.set_title(key.replace("_", "-"))
  axes[0].set_yticks(range(len(names)))
  axes[0].set_yticklabels(names)
  axes[0].invert_yaxis()
  fig.tight_layout()
  save_figure(fig, path, dpi=100)


def save_metric_curves(rows, keys, path: str, titles=None, log_keys=("pde",)) -> str:
  """One panel per metric of metrics.jsonl rows against the step (log scale for
  `log_keys`); a sweep's rows (per-member lists) draw one labelled curve per member."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  keys = [k for k in keys if rows and k in rows[0]]
  if not keys:
    raise ValueError(f"no metric to plot in {path}: the rows have none of the keys asked for.")
  fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 2.8), squeeze=False)
  steps = [r["step"] for r in rows]
  for ax, key in zip(axes[0], keys):
    values = np.asarray([np.atleast_1d(np.asarray(r[key], np.float64)) for r in rows])
    for i in range(values.shape[1]):
      ax.plot(steps, values[:, i], label=f"member {i}" if values.shape[1] > 1 else None)
    ax.set_title((titles or {}).get(key, key), fontsize=9)
    ax.set_xlabel("step")
    if key in log_keys and np.all(values > 0):
      ax.set_yscale("log")
    if values.shape[1] > 1:
      ax.legend(fontsize=7)
  fig.tight_layout()
  save_figure(fig, path, dpi=100)
  return path


def save_matrices(mats: dict, path: str, cols: int = 2) -> str:
  """One annotated heatmap per {title: [M, M] matrix} (e.g. member x member similarity)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = -(-len(mats) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
  for ax, (title, m) in zip(axes.flat, mats.items()):
    m = np.asarray(m, np.float64)
    im = ax.imshow(m, cmap="viridis")
    if m.shape[0] <= 8:
      for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("member j")
    ax.set_ylabel("member i")
    fig.colorbar(im, ax=ax, fraction=0.046)
  for ax in list(axes.flat)[len(mats):]:
    ax.axis("off")
  fig.tight_layout()
  save_figure(fig, path, dpi=100)
  return path
