r"""Frozen pre-extracted item representations, one extractor per domain (SEMI §3.2.1, A.5).

    python -m tfrec.datasets.pre_extract --data_dir=DIR --dim=32 [--features=visual,category,title]

SEMI does not learn its items: each micro-video has a 128-d representation v^m from a
pre-trained UniVL model (frames, title, tags) and each product a p^m from a separately
pre-trained UNITER model (cover, title, category); both are frozen, stored in a feature database,
and summed with the time-block embedding as the sequence encoders' input (§3.2.3). CCL and SEMI
therefore see the same item inputs, and what CCL transfers is the sequence encoders and time
blocks alone.

No such extractors exist for the project's data, so this command fits the simplest frozen
stand-in that keeps those properties: per domain, a principal-component projection of the
item's content (the store's visual vector, its category one-hot and its title's bag of words),
fitted on that domain's items only. It is unsupervised (no click enters it, so no test label
leaks), deterministic, and per domain (the source items' content never moves a target item's
vector). The result is written into the item store as the column `pre_extracted`
<float32>[num_items + 1, dim] (row 0 zeros), which models read with
`--model_args=item_features=[pre_extracted]` (`tfrec.layers.item_encoder`).

Per domain d with items I_d:
  X = [ visual (standardised per column)  |  one-hot(category)  |  title token counts ]
  each block centred and scaled to total variance 1 (each modality weighs the same; a block the
  store lacks is left out), then X = U S V^T (thin SVD) and the item vectors are the first
  `dim` columns of U S, scaled so that the domain's mean squared vector norm is 1 (zero columns
  when the content has rank < dim).
"""

from __future__ import annotations

import json
import os
from typing import Dict, Sequence

import numpy as np

from tfrec.data.item_store import ItemStore

MODALITIES = ("visual", "category", "title")
STATS_FILE = "pre_extracted.json"


def _blocks(store: ItemStore, items: np.ndarray, features: Sequence[str]) -> Dict[str, np.ndarray]:
  """The domain's content blocks (rows = `items`), before centring and scaling."""
  out = {}
  if "visual" in features and store.visual_dim:
    v = store.visual[items].astype(np.float64)
    sd = v.std(axis=0)
    out["visual"] = (v - v.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
  if "category" in features:
    cats, inverse = np.unique(store.category[items], return_inverse=True)
    onehot = np.zeros((len(items), len(cats)))
    onehot[np.arange(len(items)), inverse] = 1.0
    out["category"] = onehot
  if "title" in features and store.title.size and store.title[items].any():
    tokens = store.title[items]
    vocab, inverse = np.unique(tokens[tokens > 0], return_inverse=True)
    counts = np.zeros((len(items), len(vocab)))
    rows = np.nonzero(tokens > 0)[0]
    np.add.at(counts, (rows, inverse), 1.0)
    out["title"] = counts
  return out


def extract_domain(store: ItemStore, items: np.ndarray, dim: int,
                   features: Sequence[str] = MODALITIES) -> np.ndarray:
  """<float32>[len(items), dim]: the domain's frozen item vectors (module docstring).

  Raises:
    ValueError: no modality of `features` has content for these items.
  """
  blocks = _blocks(store, items, features)
  parts = []
  for block in blocks.values():
    centred = block - block.mean(axis=0)
    total = float((centred ** 2).sum() / max(1, len(items)))
    if total > 0:
      parts.append(centred / np.sqrt(total))
  if not parts:
    raise ValueError(f"no content to extract from in {list(features)} for these "
                     f"{len(items)} items (the store has visual_dim={store.visual_dim})")
  x = np.concatenate(parts, axis=1)
  u, s, _ = np.linalg.svd(x, full_matrices=False)
  k = min(dim, len(s))
  z = np.zeros((len(items), dim))
  z[:, :k] = u[:, :k] * s[:k]
  # Sign convention: each component's largest entry positive (SVD signs are arbitrary).
  flip = np.sign(z[np.argmax(np.abs(z), axis=0), np.arange(dim)])
  z *= np.where(flip == 0, 1.0, flip)
  norm = np.sqrt(np.mean(np.sum(z ** 2, axis=1)))
  return (z / norm if norm > 0 else z).astype(np.float32)


def pre_extract(store: ItemStore, dim: int, features: Sequence[str] = MODALITIES
                ) -> Dict[str, object]:
  """Fills `store.pre_extracted` with each domain's vectors; returns per-domain statistics
  (items, the blocks used, the share of the content's variance the `dim` components keep)."""
  if dim < 1:
    raise ValueError(f"--dim must be >= 1, got {dim}")
  unknown = sorted(set(features) - set(MODALITIES))
  if unknown:
    raise ValueError(f"unknown --features {unknown}; choose from {list(MODALITIES)}")
  out = np.zeros((store.num_items + 1, dim), np.float32)
  stats: Dict[str, object] = {"dim": dim, "features": list(features), "domains": {}}
  for domain in np.unique(store.domain[1:]):
    items = store.item_ids(domain=int(domain))
    out[items] = extract_domain(store, items, dim, features)
    blocks = _blocks(store, items, features)
    stats["domains"][int(domain)] = {"items": int(len(items)), "blocks": sorted(blocks)}
  store.pre_extracted = out
  return stats


def _define_flags() -> None:
  from absl import flags
  flags.DEFINE_string("data_dir", None, "Dataset directory (its items.npz is rewritten).",
                      required=True)
  flags.DEFINE_integer("dim", 32, "Width of the vectors: the model's dim (SEMI A.1: 128).")
  flags.DEFINE_list("features", list(MODALITIES), "Content to extract from.")


def main(argv: Sequence[str]) -> None:
  from absl import flags
  del argv
  fv = flags.FLAGS
  store = ItemStore.load(fv.data_dir)
  stats = pre_extract(store, fv.dim, fv.features)
  store.save(fv.data_dir)
  with open(os.path.join(fv.data_dir, STATS_FILE), "w") as f:
    json.dump(stats, f, indent=2, sort_keys=True)
  print(f"tfrec.datasets.pre_extract: {fv.data_dir}/items.npz now holds {fv.dim}-d "
        f"pre-extracted vectors per domain ({json.dumps(stats['domains'])})")


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.datasets.pre_extract", _define_flags)
