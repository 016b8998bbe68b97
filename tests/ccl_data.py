"""Random ccl_pair batches (numpy only, so a fresh process can import it before TensorFlow
starts): used by tests/test_ccl.py and tests/ccl_two_replicas.py."""

import numpy as np


def pair_features(n, seed, num_items, length):
  """n pairs of distinct users (ids seed * 1000 + 0..n-1), each domain with 1..length real
  items (ids 1..num_items), hourly timestamps."""
  rng = np.random.default_rng(seed)
  f = {"user_id": seed * 1000 + np.arange(n, dtype=np.int64)}
  for d in ("source", "target"):
    lens = rng.integers(1, length + 1, size=n)
    mask = np.arange(length)[None, :] < lens[:, None]
    f[f"{d}_item_ids"] = np.where(mask, rng.integers(1, num_items + 1, size=(n, length)), 0)
    f[f"{d}_timestamps"] = np.where(mask, 3600 * np.arange(length)[None, :], 0).astype(np.int64)
    f[f"{d}_mask"] = mask
  return f
