"""MicroVideo-1.7M -> records of the tfrec contract: `ConvertConfig`, `prepare` (vectorised
planning of every record), `records`, `write`. The rules are in `tfrec.datasets.microvideo`."""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, Tuple

import numpy as np

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.data import schema
from tfrec.data.info import DatasetInfo
from tfrec.datasets import _convert
from tfrec.data.item_store import ItemStore
from tfrec.data.tfrecord_io import ShardedWriter
from tfrec.datasets.microvideo.raw import RawMicroVideo

__all__ = ["ConvertConfig", "Prepared", "SPLITS", "prepare", "records", "write"]

# ranking only; the test items are the cold set, so the test split is named for the cold
# pool that `evaluation.sampled.negative_pool` picks for a split whose name contains "cold".
SPLITS = ("train", "valid", "test_cold")
RAW_IDS_FILE = "raw_ids.npz"
_NEVER = np.iinfo(np.int64).max


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
  """Every choice of the conversion (the package docstring says what each one does)."""

  valid_share: float = 0.1     # of each user's train_data.csv rows, the latest, -> valid
  max_seq_len: int = 160       # newest clicks kept per history (THACIL §4.3: n = 160)
  num_categories: int = 512    # raw categories 0..511 (THACIL §4.1) -> ids 1..512
  visual_dim: int = 512        # cover feature width (Inception-v3, §3.1)

  def __post_init__(self):
    if not 0 <= self.valid_share < 1:
      raise ValueError("valid_share must be in [0, 1)")
    if self.max_seq_len < 1 or self.num_categories < 1 or self.visual_dim < 1:
      raise ValueError("max_seq_len, num_categories and visual_dim must be >= 1")


@dataclasses.dataclass
class Prepared:
  """Everything `records` and `stats.statistics` need.

  Attributes:
    rows: split -> dict of <int64>[r] arrays "user", "item" (tfrec id), "label", "t", "lo",
      "hi" (the history is clicks[lo:hi]), in (user, time, line) order.
    clicks: "user", "item", "t": <int64>[c] every click of train_data.csv, sorted by
      (user, time, line): the history source.
    skipped: reason -> rows left out.
  """

  config: ConvertConfig
  info: DatasetInfo
  store: ItemStore
  raw_ids: Dict[str, np.ndarray]
  rows: Dict[str, Dict[str, np.ndarray]]
  clicks: Dict[str, np.ndarray]
  skipped: Dict[str, int]
  timestamp_offset: int
  unused_feature_rows: Tuple[int, int]


def _ids(used: np.ndarray, n_rows: int, first: int) -> Tuple[np.ndarray, np.ndarray]:
  """(raw row -> tfrec id (0 = unused), the raw rows used, ascending): ids first, first+1, ..."""
  rows = np.unique(used)
  id_of = np.zeros(n_rows, np.int64)
  id_of[rows] = np.arange(first, first + len(rows))
  return id_of, rows


def _valid_cut(user: np.ndarray, t: np.ndarray, num_users: int, share: float) -> np.ndarray:
  """<int64>[U] V_u: the time of the first of the user's last `share` rows (rounded half up)
  in time order; rows at t >= V_u are valid, so equal times never straddle the cut. int64
  max when the share rounds to none. `user`, `t` sorted by (user, t)."""
  counts = np.bincount(user, minlength=num_users)
  n_late = np.floor(share * counts + 0.5).astype(np.int64)
  if not len(t):
    return np.full(num_users, _NEVER, np.int64)
  first = np.clip(np.cumsum(counts) - n_late, 0, len(t) - 1)
  return np.where(n_late > 0, t[first], _NEVER)


def prepare(raw: RawMicroVideo, config: ConvertConfig = ConvertConfig()) -> Prepared:
  """Assigns ids, the splits and every history window (no files written)."""
  tr, te = raw.train, raw.test
  train_id, train_rows = _ids(tr.item, len(raw.train_features), 1)
  test_id, test_rows = _ids(te.item, len(raw.test_features), len(train_rows) + 1)
  n_items = len(train_rows) + len(test_rows)
  category = np.zeros(n_items + 1, np.int64)
  category[train_id[tr.item]] = tr.cate + 1
  category[test_id[te.item]] = te.cate + 1
  cold = np.zeros(n_items + 1, np.int64)
  cold[len(train_rows) + 1:] = 1
  domain = np.full(n_items + 1, schema.TARGET, np.int64)
  domain[0] = 0
  visual = np.zeros([n_items + 1, raw.train_features.shape[1]], np.float32)
  visual[1:len(train_rows) + 1] = raw.train_features[train_rows]
  visual[len(train_rows) + 1:] = raw.test_features[test_rows]
  store = ItemStore(domain=domain, category=category,
                    tags=np.zeros([n_items + 1, schema.MAX_TAGS], np.int64),
                    title=np.zeros([n_items + 1, schema.MAX_TITLE_LEN], np.int64),
                    visual=visual, cold=cold)
  raw_ids = {"source_file": np.r_[-1, np.zeros(len(train_rows)), np.ones(len(test_rows))]
             .astype(np.int64), "raw_row": np.r_[-1, train_rows, test_rows].astype(np.int64)}

  offset = min(0, int(min(tr.timestamp.min(initial=0), te.timestamp.min(initial=0))))
  num_users = int(max(tr.user.max(initial=-1), te.user.max(initial=-1))) + 1
  # train_data.csv in (user, time, line) order; the clicks are the history source.
  o = np.lexsort((tr.line, tr.timestamp, tr.user))
  user, item, t = tr.user[o], train_id[tr.item[o]], tr.timestamp[o] - offset
  label = tr.label[o]
  valid = t >= _valid_cut(user, t, num_users, config.valid_share)[user]
  click = label == 1
  span = int(max(t.max(initial=0), (te.timestamp - offset).max(initial=0))) + 1
  if num_users * span >= 2 ** 62:
    raise ValueError(f"timestamps span {span} too wide to key per user")
  key = user[click] * span + t[click]
  clicks = {"user": user[click], "item": item[click], "t": t[click]}

  def plan(u, i, lab, ts):
    hi = np.searchsorted(key, u * span + ts, "left")    # Clicks strictly before the row.
    start = np.searchsorted(key, u * span, "left")
    lo = np.maximum(start, hi - config.max_seq_len)
    keep = hi > lo
    return {"user": u[keep], "item": i[keep], "label": lab[keep], "t": ts[keep],
            "lo": lo[keep], "hi": hi[keep]}, int((~keep).sum())

  ot = np.lexsort((te.line, te.timestamp, te.user))
  parts = {"train": (user[~valid], item[~valid], label[~valid], t[~valid]),
           "valid": (user[valid], item[valid], label[valid], t[valid]),
           "test_cold": (te.user[ot], test_id[te.item[ot]], te.label[ot],
                         te.timestamp[ot] - offset)}
  rows, skipped = {}, {}
  for split in SPLITS:
    rows[split], n = plan(*parts[split])
    skipped[f"ranking/{split}: no click in train_data.csv before the row"] = n
  info = _dataset_info(raw, config, store, num_users, offset)
  return Prepared(config=config, info=info, store=store, raw_ids=raw_ids, rows=rows,
                  clicks=clicks, skipped=skipped, timestamp_offset=offset,
                  unused_feature_rows=(len(raw.train_features) - len(train_rows),
                                       len(raw.test_features) - len(test_rows)))


def _dataset_info(raw: RawMicroVideo, config: ConvertConfig, store: ItemStore,
                  num_users: int, offset: int) -> DatasetInfo:
  extra = {"converter": "tfrec.datasets.microvideo", "config": dataclasses.asdict(config),
           "splits": {"ranking": list(SPLITS)}, "cold_split": "test_cold",
           "raw": {"path": os.path.abspath(raw.path), "train_rows": len(raw.train),
                   "test_rows": len(raw.test)},
           "timestamp_offset": offset, "raw_ids_file": RAW_IDS_FILE,
           "user_features": "none (zeros)", "domains": "target only (no source domain)"}
  return DatasetInfo(name="microvideo/1.7m", num_users=num_users, num_items=store.num_items,
                     num_scenarios=1, num_categories=config.num_categories, num_tags=0,
                     num_tokens=0, user_feature_sizes=(1,) * schema.NUM_USER_FEATURES,
                     visual_dim=store.visual_dim, extra=extra,
                     max_seq_len=config.max_seq_len)


def num_records(p: Prepared, split: str) -> int:
  return len(p.rows[split]["user"])


def records(p: Prepared, split: str) -> Iterator[Dict]:
  """Yields the ranking record dicts of one split (user, time order), ready for the writer."""
  r, c = p.rows[split], p.clicks
  zeros = np.zeros(schema.NUM_USER_FEATURES, np.int64)
  empty = np.zeros(0, np.int64)
  for j in range(len(r["user"])):
    lo, hi = r["lo"][j], r["hi"][j]
    yield {"user_id": r["user"][j], "user_features": zeros, "scenario_id": 0,
           "item_id": r["item"][j], "timestamp": r["t"][j], "label": r["label"][j],
           "source_item_ids": empty, "source_timestamps": empty,
           "target_item_ids": c["item"][lo:hi], "target_timestamps": c["t"][lo:hi]}


def write(p: Prepared, out_dir: str, num_shards: int = 16) -> None:
  """Writes the shard sets, items.npz, raw_ids.npz and dataset.json (staged; dataset.json
  last, so a directory reads as complete only when everything landed)."""
  with _convert.staged(out_dir, p.store, p.info) as stage:
    np.savez(os.path.join(stage, RAW_IDS_FILE), **p.raw_ids)
    for split in SPLITS:
      with ShardedWriter(stage, "ranking", split, num_shards, info=p.info) as w:
        for rec in records(p, split):
          w.write(rec, shard=int(rec["user_id"]) % num_shards)
