"""Seen items: every item a user interacted with before a split's positive, beside the dataset.

A `matching` record carries the newest `max_seq_len` items of its user's history. A protocol that
must not offer a user an item they already interacted with (SASRec's evaluation: "rated =
set(train[u])", the whole training history) needs the rest too: for the 1,572 ML-1M users with
more than 200 ratings, the older ones would otherwise be drawn as negatives (items the user is
known to like, so the positive ranks lower than under the paper's protocol).

A converter whose splits hold at most one record per user (leave-one-out views) writes, per split,
`seen_items/<split>.npz`:

  users   <int64>[n]      the users with a record in the split, ascending
  indptr  <int64>[n + 1]  user i's items are items[indptr[i]:indptr[i + 1]]
  items   <int64>[m]      item ids, oldest first (may repeat an id)

A split with several records per user (MovieLens' m5 view, `tfrec.datasets.movielens.m5`: each
user's last day) holds instead the user's items before the split's period: evaluation excludes
them together with each record's own behaviour sequence, which holds the items just before it.

Evaluation (`tfrec.evaluation.retrieval`) excludes a record's seen items (and its behaviour
sequence) when the file exists, and its behaviour sequence alone otherwise; the result says
which.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

DIRNAME = "seen_items"


def path(data_dir: str, split: str) -> str:
  return os.path.join(data_dir, DIRNAME, f"{split}.npz")


def write(out_dir: str, split: str, rows: Iterable[Tuple[int, np.ndarray]]) -> str:
  """Writes `seen_items/<split>.npz` from (user, <int>[k] items oldest first) pairs.

  Raises:
    ValueError: a user given twice (the file keys by user, so a split with several records
      per user cannot have one), or a negative item id.
  """
  users, lists = [], []
  for user, items in rows:
    users.append(int(user))
    lists.append(np.asarray(items, np.int64).ravel())
  order = np.argsort(users, kind="stable")
  users = np.asarray(users, np.int64)[order]
  if len(users) and np.any(np.diff(users) == 0):
    dup = int(users[np.flatnonzero(np.diff(users) == 0)[0]])
    raise ValueError(f"seen items of split {split!r}: user {dup} given twice (one record per "
                     "user and split is required)")
  lists = [lists[i] for i in order]
  lengths = np.asarray([len(x) for x in lists], np.int64)
  items = np.concatenate(lists) if lists else np.zeros([0], np.int64)
  if len(items) and items.min() < 0:
    raise ValueError(f"seen items of split {split!r}: negative item id {int(items.min())}")
  os.makedirs(os.path.join(out_dir, DIRNAME), exist_ok=True)
  target = path(out_dir, split)
  np.savez_compressed(target, users=users,
                      indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                      items=items)
  return target


def load(data_dir: str, split: str) -> Optional[Dict[int, np.ndarray]]:
  """{user: <int64>[k] seen items} of `split`, or None when the dataset has no such file.

  Raises:
    ValueError: a file whose arrays do not fit together (names the file).
  """
  p = path(data_dir, split)
  if not os.path.exists(p):
    return None
  with np.load(p) as z:
    missing = {"users", "indptr", "items"} - set(z.files)
    if missing:
      raise ValueError(f"{p}: missing arrays {sorted(missing)}")
    users, indptr, items = z["users"], z["indptr"], z["items"]
  if (len(indptr) != len(users) + 1 or (len(indptr) and (indptr[0] != 0
                                                           or indptr[-1] != len(items)))
      or np.any(np.diff(indptr) < 0)):
    raise ValueError(f"{p}: indptr does not index items ({len(users)} users, "
                     f"{len(indptr)} offsets, {len(items)} items)")
  return {int(u): items[indptr[i]:indptr[i + 1]] for i, u in enumerate(users)}
