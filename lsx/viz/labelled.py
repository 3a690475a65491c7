"""Image grids that explain themselves: every row and column labelled (matplotlib).

`grid_figure` lays out a [rows, cols, H, W, C] grid of images with a label per row (left),
a label per column (top), optional column groups (a label over a block of columns, e.g.
one anchor's traversal), marked columns (outlined: the anchor itself) and dimmed rows
(greyed labels: collapsed latents). `save_figure` writes it as a PNG that also carries its
labels as PNG text (`lsx:labels`, JSON), so a reader (or a test) recovers what each row
and column is from the file; `read_labels` reads them back.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

LABELS_KEY = "lsx:labels"


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


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def grid_figure(images, *, row_labels: Sequence[str], col_labels: Sequence[str] = (),
                col_groups: Sequence[tuple] = (), marked_cols: Sequence[int] = (),
                dim_rows: Sequence[int] = (), title: str = "", xlabel: str = "",
                ylabel: str = "", cell_inches: float = 0.55):
  """A matplotlib Figure of `images` [R, C, H, W, ch] in [0, 1] (module doc).
  col_groups: (label, first column, last column + 1) triples, drawn above the columns."""
  images = np.asarray(images)
  rows, cols, h, w = images.shape[:4]
  if len(row_labels) != rows or (col_labels and len(col_labels) != cols):
    raise ValueError(f"{rows} x {cols} images need {rows} row labels and {cols} column "
                     f"labels, got {len(row_labels)} and {len(col_labels)}.")
  pad = 2
  grid = image_grid(images, pad=pad)
  plt = _pyplot()
  fig_w = 1.6 + cols * cell_inches * w / max(h, 1)
  fig_h = 1.1 + rows * cell_inches + (0.3 if col_groups else 0.0) + (0.3 if title else 0.0)
  fig, ax = plt.subplots(figsize=(fig_w, fig_h))
  ax.imshow(grid, interpolation="nearest")
  centre = lambda i, size: pad + i * (size + pad) + size / 2 - 0.5
  ax.set_yticks([centre(r, h) for r in range(rows)])
  ax.set_yticklabels(list(row_labels), fontsize=8)
  for r in dim_rows:
    ax.get_yticklabels()[r].set_color("0.6")
  ax.xaxis.tick_top()
  ax.set_xticks([centre(c, w) for c in range(cols)])
  ax.set_xticklabels(list(col_labels) or [""] * cols, fontsize=7,
                     rotation=90 if cols > 12 else 0)
  ax.tick_params(length=0)
  for c in marked_cols:
    x0 = pad + c * (w + pad) - 1.5
    ax.add_patch(plt.Rectangle((x0, 0.5), w + 2, grid.shape[0] - 2, fill=False,
                               edgecolor="tab:red", linewidth=1.0))
  for label, start, stop in col_groups:
    x = (centre(start, w) + centre(stop - 1, w)) / 2
    ax.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 22 if
                col_labels else 4), textcoords="offset points", ha="center", fontsize=8)
  if xlabel:  # under the grid (the column labels are above it)
    ax.set_xlabel(xlabel, fontsize=8, labelpad=4)
  if ylabel:
    ax.set_ylabel(ylabel, fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  for side in ax.spines.values():
    side.set_visible(False)
  fig.tight_layout()
  return fig


def figure_labels(fig) -> dict:
  """The labels a figure shows: its title and, per axes, the title, x / y axis labels and
  tick labels (a grid figure's rows are its y ticks, its columns its x ticks) and texts."""
  def axes(ax):
    return {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
            "rows": [t.get_text() for t in ax.get_yticklabels()],
            "columns": [t.get_text() for t in ax.get_xticklabels()],
            "texts": [t.get_text() for t in ax.texts]}
  return {"title": fig._suptitle.get_text() if fig._suptitle is not None else "",
          "axes": [axes(ax) for ax in fig.axes]}


def save_figure(fig, path: str, dpi: int = 110) -> str:
  """`fig` as a PNG carrying its labels (`figure_labels`) as PNG text; closes it. Every
  figure lsx writes goes through here."""
  plt = _pyplot()
  fig.canvas.draw()  # tick labels are set at draw time
  labels = figure_labels(fig)
  fig.savefig(path, dpi=dpi, metadata={LABELS_KEY: json.dumps(labels)})
  plt.close(fig)
  return path


def read_labels(path: str) -> dict:
  """The labels a PNG written by `save_figure` carries ({} for any other PNG)."""
  from PIL import Image
  with Image.open(path) as im:
    text = dict(getattr(im, "text", {}) or {})
  return json.loads(text[LABELS_KEY]) if LABELS_KEY in text else {}


def save_gif(frames, path: str, *, scale: int = 2, seconds: float = 2.0) -> str:
  """frames [T, H, W, ch] in [0, 1] as a looping GIF (forth and back) of `seconds`."""
  from PIL import Image
  a = to_uint8(np.asarray(frames))
  seq = list(a) + list(a[-2:0:-1])
  imgs = [Image.fromarray(x).resize((x.shape[1] * scale, x.shape[0] * scale), Image.NEAREST)
          for x in seq]
  imgs[0].save(path, save_all=True, append_images=imgs[1:], loop=0,
               duration=max(int(1000 * seconds / len(imgs)), 20))
  return path
