"""Attention case studies (ADAPT Fig. 6): where a trained model looks in each domain's history
when it scores an impression, as TensorBoard images and markdown tables.

`python -m tfrec.evaluate --run_dir=<ADEN/ADAPT run> --attention_examples=8 [--splits=test]`
takes the first N impressions of each split (in file order; `--max_examples` does not apply),
asks the model for its weights (`model.attention_weights(features)`: domain -> <float>[batch,
heads, seq], e.g. `ADEN.attention_weights`, eq. 9), and writes, under
`<run_dir>/logs/attention/<split>` (`tensorboard --logdir <run_dir>/logs`):

  image "attention/<split>/example_<i>"   one heat map per impression: for each domain (in the
        model's order) one row per head and a last row with the mean over heads, one column per
        history position (oldest first); a cell's darkness is its weight divided by the largest
        weight of its row (the map shows where each head looks; the table gives the values);
        padded positions are light grey, a white row separates the domains
  text  "attention/<split>/example_<i>"   the impression (user, item, category, label, logit)
        and per domain a table of position, item id, category, hours before the request and
        the weight (mean over heads)

The paper's figure shows each history's items with their weights for one target storytelling;
these are the same quantities for any run whose model exposes them.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf

CELL = 12           # pixels per cell of the heat map
PAD_GREY = 220      # padded positions
_HOT = np.array([8, 48, 107], np.float64)  # a weight equal to its row's maximum (dark blue)


def supports(model: Any) -> bool:
  return callable(getattr(model, "attention_weights", None))


def heatmap(rows: np.ndarray, real: np.ndarray, cell: int = CELL) -> np.ndarray:
  """<uint8>[rows * cell, seq * cell, 3] of <float>[rows, seq] weights; `real` <bool>[seq].

  Each row is scaled by its own maximum over real positions (white = 0, dark blue = the
  maximum); padded positions are grey. A row without real positions stays grey."""
  rows = np.asarray(rows, np.float64)
  real = np.asarray(real, bool)
  if rows.ndim != 2 or real.shape != rows.shape[1:]:
    raise ValueError(f"heatmap: weights {rows.shape} and mask {real.shape} disagree")
  peak = np.where(real[None, :], rows, 0.0).max(axis=1, keepdims=True) if rows.size else rows
  share = np.where(peak > 0, rows / np.where(peak > 0, peak, 1.0), 0.0)  # [rows, seq] in [0, 1]
  rgb = 255.0 + share[..., None] * (_HOT - 255.0)
  rgb = np.where(real[None, :, None], rgb, float(PAD_GREY))
  image = np.repeat(np.repeat(np.round(rgb).astype(np.uint8), cell, axis=0), cell, axis=1)
  return image


def case_studies(model: Any, batch: Mapping[str, tf.Tensor], store: Any,
                 examples: int) -> List[Dict[str, Any]]:
  """The first `examples` rows of `batch` (a reader batch with "label"): per impression its
  ids, label, logit and per domain the real history positions with their weights."""
  if not supports(model):
    raise ValueError(f"{type(model).__name__} does not expose attention weights "
                     "(`attention_weights(features)`; ADEN/ADAPT do)")
  n = min(int(examples), int(batch["item_id"].shape[0]))
  features = {k: v[:n] for k, v in batch.items() if k != "label"}
  weights = {d: w.numpy() for d, w in model.attention_weights(features).items()}
  logits = model(features, training=False).numpy()
  out = []
  for i in range(n):
    item = int(features["item_id"][i])
    study: Dict[str, Any] = {
        "user_id": int(features["user_id"][i]) if "user_id" in features else -1,
        "item_id": item, "category": int(store.category[item]),
        "label": int(batch["label"][i]), "logit": float(logits[i]), "domains": {}}
    now = int(features["timestamp"][i])
    for d, w in weights.items():
      ids = features[f"{d}_item_ids"][i].numpy()
      times = features[f"{d}_timestamps"][i].numpy()
      real = ids > 0
      study["domains"][d] = {
          "weights": w[i][:, :len(ids)], "real": real, "item_ids": ids,
          "categories": store.category[ids], "hours_before": (now - times) / 3600.0}
    out.append(study)
  return out


def image_of(study: Mapping[str, Any], cell: int = CELL) -> np.ndarray:
  """<uint8>[height, width, 3]: each domain's heads and their mean, domains stacked."""
  blocks = []
  width = max(len(v["real"]) for v in study["domains"].values())
  for d, v in study["domains"].items():
    rows = np.concatenate([v["weights"], v["weights"].mean(axis=0, keepdims=True)])
    real = v["real"]
    pad = width - len(real)  # domains of different lengths: grey to the common width
    rows = np.pad(rows, ((0, 0), (0, pad)))
    real = np.pad(real, (0, pad))
    if blocks:
      blocks.append(np.full((cell // 2, width * cell, 3), 255, np.uint8))
    blocks.append(heatmap(rows, real, cell))
  return np.concatenate(blocks, axis=0)


def to_markdown(study: Mapping[str, Any]) -> str:
  lines = [f"user {study['user_id']}, item {study['item_id']} (category "
           f"{study['category']}), label {study['label']}, logit {study['logit']:.4f}", ""]
  for d, v in study["domains"].items():
    heads = v["weights"].shape[0]
    lines += [f"**{d} history** (weight: mean over {heads} head{'s' * (heads > 1)})", "",
              "| position | item | category | hours before | weight |", "|---|---|---|---|---|"]
    mean = v["weights"].mean(axis=0)
    for j in np.flatnonzero(v["real"]):
      lines.append(f"| {j} | {int(v['item_ids'][j])} | {int(v['categories'][j])} | "
                   f"{float(v['hours_before'][j]):.1f} | {float(mean[j]):.4f} |")
    if not v["real"].any():
      lines.append("| (no history) | | | | |")
    lines.append("")
  return "\n".join(lines)


def write_summaries(logdir: str, split: str, studies: Sequence[Mapping[str, Any]],
                    step: int = 0) -> str:
  """Writes one image and one text summary per study to `logdir`; returns it."""
  os.makedirs(logdir, exist_ok=True)
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    for i, study in enumerate(studies):
      name = f"attention/{split}/example_{i}"
      tf.summary.image(name, image_of(study)[None], step=step,
                       description="rows: each head, then the mean over heads, per domain "
                       "(domains separated by a white band); columns: history positions, "
                       "oldest first; darkness: weight / the row's largest weight; grey: "
                       "padding")
      tf.summary.text(name, to_markdown(study), step=step)
  writer.flush()
  writer.close()
  return logdir
