"""COUPLE Fig. 5: how a trained memory tree's leaves (the user groups, §3.2.3) spread, with and
without the SRIP orthogonality penalty (eq. 9-10).

The paper shows a t-SNE of the leaf groups: without the penalty the leaves collapse onto a few
directions, with it they spread. Here that is measured on the leaf slot matrix S <[L, d]>
(`MemoryTree.slots[-1]`) of a trained run, and drawn:

  coherence      mean |cos(s_i, s_j)| over distinct leaves (0: orthogonal directions, 1: one
                 direction)
  srip           sigma(G - I), G the Gram matrix of S's smaller side (S^T S, d x d, for 512
                 leaves of width 64), sigma the exact spectral norm: eq. 10's quantity without
                 the power iteration
  effective rank exp(entropy of the normalised singular values of S) (Roy & Vetterli 2007):
                 how many directions the leaves use, at most min(L, d)
  embedding      the leaves in 2-D, each coloured by its parent in the tree's first layer: a
                 t-SNE (scikit-learn, when installed; the paper's figure) or else the first two
                 principal components (numpy); the result names the method
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np


def leaf_slots(model: Any) -> Tuple[np.ndarray, np.ndarray]:
  """(<float32>[L, d] the leaf slots, <int64>[L] each leaf's first-layer ancestor) of a COUPLE
  model's memory tree.

  Raises:
    ValueError: the model has no memory tree (`group=False`).
  """
  tree = getattr(model, "tree", None)
  if tree is None or not getattr(tree, "slots", None):
    raise ValueError("the model has no built memory tree (COUPLE with group=True)")
  slots = np.asarray(tree.slots[-1].numpy(), np.float32)
  per_first = int(np.prod(tree.branching[1:])) if len(tree.branching) > 1 else 1
  return slots, np.arange(len(slots)) // per_first


def leaf_statistics(slots: np.ndarray) -> Dict[str, float]:
  """{"coherence", "srip", "effective_rank"} of a leaf matrix <[L, d]> (module docstring)."""
  s = np.asarray(slots, np.float64)
  norms = np.linalg.norm(s, axis=1, keepdims=True)
  unit = s / np.where(norms > 0, norms, 1.0)
  cos = unit @ unit.T
  off = ~np.eye(len(s), dtype=bool)
  gram = s.T @ s if s.shape[0] >= s.shape[1] else s @ s.T
  srip = float(np.max(np.abs(np.linalg.eigvalsh(gram - np.eye(len(gram))))))
  sv = np.linalg.svd(s, compute_uv=False)
  p = sv / sv.sum() if sv.sum() > 0 else np.ones_like(sv) / len(sv)
  entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0))
  return {"coherence": float(np.mean(np.abs(cos[off]))) if off.any() else 0.0,
          "srip": srip, "effective_rank": float(np.exp(entropy))}


def embed_2d(x: np.ndarray, seed: int = 0) -> Tuple[np.ndarray, str]:
  """(<float64>[n, 2] coordinates, the method's name): t-SNE when scikit-learn is installed,
  else the first two principal components."""
  x = np.asarray(x, np.float64)
  try:
    from sklearn.manifold import TSNE
  except ImportError:
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "PCA (scikit-learn not installed: no t-SNE)"
  perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
  coords = TSNE(n_components=2, perplexity=perplexity, random_state=seed,
                init="pca").fit_transform(x)
  return coords, "t-SNE"


__all__ = ["embed_2d", "leaf_slots", "leaf_statistics"]
