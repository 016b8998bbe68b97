"""MovieLens-1M as one sequence per user, the view of the SASRec paper (Kang & McAuley,
"Self-Attentive Sequential Recommendation", ICDM 2018, §IV-A), as `matching` records.

    python -m tfrec.datasets.movielens --out DIR --view=sequential [--seq_max_len=200]
        [--seq_min_count=5] [--seq_core=once|fixed_point] [--raw_dir=...] [--source=...]

Rules (those of the paper's public code, kang205/SASRec `data/DataProcessing.py` + `util.py`):
  * every rating is an implicit interaction (its star value is kept only as a subsidiary feature);
  * 5-core (`min_count`): `core="once"` (the default, the paper's code) keeps a rating when its
    user AND its movie each have >= min_count ratings COUNTED ON THE RAW FILE, in one pass; a
    user or movie may then fall below min_count. `core="fixed_point"` repeats the filter on the
    kept ratings until nothing changes (the iterated k-core). On ML-1M both give the same view
    (measured: the fixed point is reached in pass 2): 6,040 users, 3,416 movies, 999,611
    ratings, the users and items of the paper's Table II;
  * per user, the kept ratings in time order, equal timestamps in raw file order (a stable sort,
    as the paper's `list.sort`), giving the sequence s_1..s_n;
  * leave-one-out: s_n is `test`'s positive, s_{n-1} `valid`'s, and `train` holds s_1..s_{n-2}.

Records (one `matching` record per user and split, shard = user id % num_shards):
  train  seq = s_1..s_{n-3}, positive = s_{n-2} (users with n >= 4). SASRec trains every
         position t of seq to predict s_{t+1} and the newest one to predict the positive
         (`tfrec.models.sasrec`), which is exactly the paper's training on s_1..s_{n-2}.
  valid  seq = s_1..s_{n-2}, positive = s_{n-1} (users with n >= 3).
  test   seq = s_1..s_{n-1}, positive = s_n (users with n >= 3; the paper's test input also
         holds the validation item).
  A sequence longer than `max_len` keeps its newest `max_len` items (the paper's maxlen = 200
  on ML-1M): the cut is made here, explicitly, since the contract refuses a longer sequence.
  The whole history before each split's positive goes to `seen_items/<split>.npz`
  (`tfrec.data.seen_items`), so evaluation excludes every item the user rated, as the paper's
  (its test also excludes the validation item, which the paper's code may draw as a negative).
  Fields: seq_item_ids [L], seq_domain_ids [L] (all 1, target), seq_timestamps [L],
  seq_subsidiary [L, 2] = [1.0 viewing, stars], timestamp = the positive's time, user_id = the
  raw file row of the user (0-based), user_features / scenario_id as the two-domain view
  (`conversion._users`), cold_user 0.

Items: ids 1..N = the kept movies in raw file order, all in the target domain (one domain), none
cold; category = primary genre, tags, title and kind (release-decade group) exactly as the
two-domain view (`conversion._item_store`), visual width 0. dataset.json: max_seq_len =
`max_len` (matching sequences accept max(100, max_seq_len), `schema.max_len_for`), extra.view =
"sequential" with the rule and counts. DIR/stats.md holds the paper's Table-II figures.

Bad raw input raises as `raw.load_raw` does (file, line, field); a record that breaks the
contract raises `DataError` naming the shard, record and field (`ShardedWriter`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Iterator, List, Tuple

import numpy as np

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.data import schema, seen_items
from tfrec.data.info import DatasetInfo
from tfrec.datasets import _convert
from tfrec.data.item_store import ItemStore
from tfrec.data.tfrecord_io import ShardedWriter
from tfrec.datasets.movielens.conversion import (GENRES, USER_FEATURE_SIZES, ConvertConfig,
                                                 _item_store, _users)
from tfrec.datasets.movielens.raw import RawMovieLens

SPLITS = ("train", "valid", "test")
CORES = ("once", "fixed_point")
# The paper's Table II, ML-1M row (users, items, avg actions per user, actions).
PAPER_TABLE_II = {"users": 6_040, "items": 3_416, "avg_actions_per_user": 163.5,
                  "actions": 1_000_000}


@dataclasses.dataclass(frozen=True)
class SequentialConfig:
  """The choices of the sequential view (module docstring).

  Attributes:
    min_count: a user and a movie need >= this many ratings (the paper: 5).
    core: "once" (the paper's code: one pass on raw counts) or "fixed_point" (iterated).
    max_len: newest items kept per sequence, also dataset.json's max_seq_len (paper: 200).
  """

  min_count: int = 5
  core: str = "once"
  max_len: int = 200

  def __post_init__(self):
    if self.min_count < 1:
      raise ValueError(f"min_count must be >= 1, not {self.min_count}")
    if self.core not in CORES:
      raise ValueError(f"core must be one of {CORES}, not {self.core!r}")
    if self.max_len < 1:
      raise ValueError(f"max_len must be >= 1, not {self.max_len}")


@dataclasses.dataclass
class SequentialView:
  """The planned view (no files yet).

  Attributes:
    config: the choices.
    info: the dataset's `DatasetInfo`.
    store: the item store (row = item id).
    names: vocab.json content (categories, tags, tokens, items, item_kinds).
    user_features: <int64>[U, 4]; scenario: <int64>[U] (U = raw users, row = user id).
    user, item, rating, t: <int64>[R'] the kept ratings sorted by (user, time, file order).
    starts: <int64>[U + 1] user u's ratings are rows starts[u]:starts[u + 1].
    rounds: filter passes run (1 for core="once").
  """

  config: SequentialConfig
  info: DatasetInfo
  store: ItemStore
  names: Dict[str, list]
  user_features: np.ndarray
  scenario: np.ndarray
  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray
  t: np.ndarray
  starts: np.ndarray
  rounds: int

  @property
  def lengths(self) -> np.ndarray:
    """<int64>[U] kept interactions per user."""
    return np.diff(self.starts)


def core_filter(user: np.ndarray, movie: np.ndarray, num_users: int, num_movies: int,
                min_count: int, core: str = "once") -> Tuple[np.ndarray, int]:
  """Which ratings the 5-core rule keeps.

  Args:
    user, movie: <int64>[R] rows of each rating's user and movie.
    min_count: the k of the k-core.
    core: "once" (both counts taken on all R ratings, one pass: the paper's code) or
      "fixed_point" (repeat on the kept ratings until no rating is dropped).

  Returns:
    (<bool>[R] kept, number of passes).
  """
  keep = np.ones(len(user), bool)
  rounds = 0
  while True:
    rounds += 1
    cu = np.bincount(user[keep], minlength=num_users)
    cm = np.bincount(movie[keep], minlength=num_movies)
    new = keep & (cu[user] >= min_count) & (cm[movie] >= min_count)
    done = core == "once" or np.array_equal(new, keep)
    keep = new
    if done:
      return keep, rounds


def prepare(raw: RawMovieLens, config: SequentialConfig = SequentialConfig()) -> SequentialView:
  """Filters, orders and numbers the ratings and builds the item store (module docstring)."""
  keep, rounds = core_filter(raw.rating_user, raw.rating_movie, raw.num_users, raw.num_movies,
                             config.min_count, config.core)
  kept_movies = np.unique(raw.rating_movie[keep])  # raw file order
  item_of_row = np.zeros(raw.num_movies, np.int64)
  item_of_row[kept_movies] = np.arange(1, len(kept_movies) + 1)
  rows = np.nonzero(keep)[0]
  # Time order per user; equal timestamps keep raw file order (lexsort is stable).
  rows = rows[np.lexsort((rows, raw.timestamp[rows], raw.rating_user[rows]))]
  user = raw.rating_user[rows]
  starts = np.concatenate([[0], np.cumsum(np.bincount(user, minlength=raw.num_users))])
  n = len(kept_movies)
  store, names = _item_store(raw, kept_movies, np.full(n, schema.TARGET, np.int64),
                             np.zeros(n, np.int64), ConvertConfig())
  feats, scenario, _ = _users(raw, ConvertConfig())
  view = SequentialView(config=config, info=None, store=store, names=names,
                        user_features=feats, scenario=scenario, user=user,
                        item=item_of_row[raw.rating_movie[rows]], rating=raw.rating[rows],
                        t=raw.timestamp[rows], starts=starts.astype(np.int64), rounds=rounds)
  view.info = _dataset_info(raw, view, int(keep.sum()))
  return view


def _dataset_info(raw: RawMovieLens, view: SequentialView, kept: int) -> DatasetInfo:
  c = view.config
  lengths = view.lengths
  extra = {"converter": "tfrec.datasets.movielens.sequential", "view": "sequential",
           "config": dataclasses.asdict(c), "splits": {"matching": list(SPLITS)},
           "raw": {"format": raw.fmt, "path": os.path.abspath(raw.path)},
           "rule": (f"{c.min_count}-core ({c.core}, {view.rounds} pass(es)); per user time "
                    "order, ties in file order; leave-one-out: last = test, second last = "
                    f"valid; sequences cut to the newest {c.max_len}"),
           "counts": {"raw_ratings": int(raw.num_ratings), "kept_ratings": kept,
                      "users_with_records": int((lengths >= 3).sum())},
           "scenario_names": ["east", "south", "midwest", "west", "other"],
           "user_features": list(schema.USER_FEATURE_NAMES), "vocab_file": "vocab.json"}
  return DatasetInfo(name="movielens/ml-1m-sequential", num_users=raw.num_users,
                     num_items=view.store.num_items, num_scenarios=5,
                     num_categories=len(GENRES), num_tags=len(view.names["tags"]),
                     num_tokens=len(view.names["tokens"]),
                     user_feature_sizes=USER_FEATURE_SIZES, visual_dim=0, extra=extra,
                     max_seq_len=c.max_len,
                     num_item_kinds=int(view.store.kind.max()) if view.store.num_items else 0)


# ----------------------------------------------------------------------------- records

_HOLD_OUT = {"train": 2, "valid": 1, "test": 0}  # items after the split's positive


def positions(view: SequentialView, split: str) -> Iterator[Tuple[int, int, int]]:
  """Yields (user, first row of seq, row of the positive) per user of `split`; the sequence is
  rows [first, positive) (at most max_len, newest kept), non-empty."""
  if split not in _HOLD_OUT:
    raise ValueError(f"unknown split {split!r}; splits: {SPLITS}")
  for u in range(len(view.starts) - 1):
    lo, hi = int(view.starts[u]), int(view.starts[u + 1])
    if hi - lo < 3:
      continue  # too short for a valid and a test item
    pos = hi - 1 - _HOLD_OUT[split]
    if pos > lo:
      yield u, max(lo, pos - view.config.max_len), pos


def records(view: SequentialView, split: str) -> Iterator[Dict]:
  """Yields the `matching` record dicts of one split, in user order (module docstring)."""
  for u, first, pos in positions(view, split):
    seq = slice(first, pos)
    yield {"user_id": u, "user_features": view.user_features[u],
           "scenario_id": view.scenario[u], "cold_user": 0, "timestamp": view.t[pos],
           "seq_item_ids": view.item[seq],
           "seq_domain_ids": np.full(pos - first, schema.TARGET, np.int64),
           "seq_timestamps": view.t[seq],
           "seq_subsidiary": np.stack([np.ones(pos - first), view.rating[seq]], 1),
           "positive_item_id": view.item[pos]}


def statistics(view: SequentialView, seconds: float = 0.0) -> str:
  """Markdown: the view's figures beside the paper's Table II, and records per split."""
  lengths = view.lengths[view.lengths > 0]
  counts = {s: sum(1 for _ in positions(view, s)) for s in SPLITS}
  ours = {"users": len(lengths), "items": view.store.num_items,
          "avg_actions_per_user": float(lengths.mean()) if len(lengths) else 0.0,
          "actions": int(lengths.sum())}
  lines = ["# MovieLens-1M, sequential view (SASRec §IV-A)", "",
           f"Rule: {view.info.extra['rule']}.", "",
           "| | this view | SASRec Table II |", "|---|---:|---:|"]
  for k, v in ours.items():
    fmt = (lambda x: f"{x:,.1f}") if isinstance(v, float) else (lambda x: f"{x:,}")
    lines.append(f"| {k} | {fmt(v)} | {fmt(PAPER_TABLE_II[k])} |")
  lines += ["", "| split | matching records |", "|---|---:|"]
  lines += [f"| {s} | {n:,} |" for s, n in counts.items()]
  longer = int((lengths - 1 > view.config.max_len).sum())
  lines += ["", f"Users whose test sequence was cut to {view.config.max_len}: {longer:,}.",
            f"Built in {seconds:.1f} s.", ""]
  return "\n".join(lines)


def write(view: SequentialView, out_dir: str, num_shards: int = 4) -> None:
  """Writes matching/{train,valid,test}, seen_items/{train,valid,test}.npz (each record's whole
  history, `tfrec.data.seen_items`), items.npz, vocab.json, dataset.json (staged, atomic:
  dataset.json lands last)."""
  with _convert.staged(out_dir, view.store, view.info) as stage:
    with open(os.path.join(stage, "vocab.json"), "w") as f:
      json.dump(view.names, f, ensure_ascii=False, indent=0)
    for split in SPLITS:
      with ShardedWriter(stage, "matching", split, num_shards, info=view.info) as w:
        for rec in records(view, split):
          w.write(rec, shard=int(rec["user_id"]) % num_shards)
      seen_items.write(stage, split, ((u, view.item[view.starts[u]:pos])
                                      for u, _, pos in positions(view, split)))


def convert_sequential(raw: RawMovieLens, out_dir: str,
                       config: SequentialConfig = SequentialConfig(), num_shards: int = 4,
                       verbose: bool = True) -> DatasetInfo:
  """prepare + write + DIR/stats.md; returns the dataset's `DatasetInfo`."""
  return _convert.run(prepare, write, statistics, raw, config, out_dir, num_shards, verbose)


__all__ = ["CORES", "PAPER_TABLE_II", "SPLITS", "SequentialConfig", "SequentialView",
           "convert_sequential", "core_filter", "positions", "prepare", "records",
           "statistics", "write"]
