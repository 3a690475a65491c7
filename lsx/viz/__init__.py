"""PNG figures: image grids, reconstructions, latent traversals."""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
  a = np.asarray(images, np.float32)
  if a.shape[-1] == 1:
    a = np.repeat(a, 3, axis=-1)
  return (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)


def image_grid(images, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
  """images [rows, cols, H, W, C] in [0,1] -> one uint8 RGB array with `pad` px gutters."""
  images = to_uint8(images)
  rows, cols, h, w, c = images.shape
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c),
                int(pad_value * 255), np.uint8)
  for r in range(rows):
    for k in range(cols):
      y, x = pad + r * (h + pad), pad + k * (w + pad)
      out[y:y + h, x:x + w] = images[r, k]
  return out


def save_png(array: np.ndarray, path: str, scale: int = 1) -> str:
  img = Image.fromarray(array)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  img.save(path)
  return path


def save_reconstructions(images, recons, path: str, scale: int = 2) -> str:
  """Two rows: inputs above their reconstructions."""
  return save_png(image_grid(np.stack([np.asarray(images), np.asarray(recons)])), path, scale)


def traversal_values(latents, num_steps: int = 9, num_sigma: float = 3.0):
  """Per-dimension traversal offsets over +-num_sigma * std of `latents` [n, d]: [d, S]."""
  std = np.asarray(latents).std(0)
  std = np.where(std > 1e-6, std, 1.0)
  return np.linspace(-num_sigma, num_sigma, num_steps)[None, :] * std[:, None]


def save_traversals(decode, anchors_z, path: str, latents=None, num_steps: int = 9,
                    num_sigma: float = 3.0, scale: int = 2) -> str:
  """Grid with one row per latent dimension; columns are, per anchor, the traversal of
  that dimension over +-num_sigma std around the anchor's code (std from `latents`).

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
  imgs = imgs.reshape((a, d, num_steps) + imgs.shape[1:])
  # rows = dims, columns = anchors side by side (each a block of num_steps)
  grid = imgs.transpose(1, 0, 2, 3, 4, 5).reshape((d, a * num_steps) + imgs.shape[3:])
  return save_png(image_grid(grid), path, scale)


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
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def log(message: str) -> None:
  """Progress and results of the experiments, on stderr."""
  import sys
  print(message, file=sys.stderr, flush=True)


def save_traversal_grid(frames, path: str, anchors: int = 3, scale: int = 2) -> str:
  """frames [K, N, S, H, W, C] (K directions, N anchors, S steps): one row per direction,
  the first `anchors` anchors side by side."""
  frames = np.asarray(frames)
  grid = [image_grid(frames[:, a]) for a in range(min(anchors, frames.shape[1]))]
  return save_png(np.concatenate(grid, axis=1), path, scale)


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
  fig.savefig(path, dpi=100)
  plt.close(fig)


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
  fig.savefig(path, dpi=100)
  plt.close(fig)
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
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
