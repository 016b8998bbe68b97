"""Amazon reviews -> `matching` records in COUPLE's cold-start protocol: `ConvertConfig`, `prepare`,
`write`. The rules are in `tfrec.datasets.amazon`."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.data import schema
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.datasets import _convert, cold_start
from tfrec.datasets.amazon.raw import ItemMeta, RawAmazon

NO_CATEGORY = "(none)"
_WORD = re.compile(r"[^\W_]+")


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
  """Every choice of the conversion (the package docstring says what each one does)."""

  positive_above: float = 3.0   # a rating above this is a positive (COUPLE: "over 3")
  kcore: int = 0                # users and items need >= kcore positives (0 or 1: no k-core)
  min_tag_count: int = 2        # a tag is kept when carried by >= this many kept items
  min_token_count: int = 1      # a title word is a token when in >= this many kept titles
  protocol: cold_start.ColdStartConfig = cold_start.ColdStartConfig()

  def __post_init__(self):
    if self.kcore < 0 or self.min_tag_count < 1 or self.min_token_count < 1:
      raise ValueError("kcore must be >= 0, min_tag_count and min_token_count >= 1")


@dataclasses.dataclass
class Prepared:
  """Everything `write` and `stats.statistics` need.

  Attributes:
    split: the protocol's `ColdStartSplit` (user ids 0..U-1, item ids 1..N).
    raw_counts: per domain (source, target) figures of the raw files (stats.md).
    kept: per domain (source, target): users, items, tags, positives kept.
    dropped: reason -> count (tags, tokens, metadata), never silent.
    rounds: passes of the k-core / both-domain filter.
  """

  config: ConvertConfig
  info: DatasetInfo
  store: ItemStore
  names: Dict[str, list]
  split: cold_start.ColdStartSplit
  raw_counts: Tuple[Dict[str, int], Dict[str, int]]
  kept: Tuple[Dict[str, int], Dict[str, int]]
  dropped: Dict[str, int]
  rounds: int

  @property
  def user_features(self) -> np.ndarray:
    return np.zeros([self.info.num_users, schema.NUM_USER_FEATURES], np.int64)

  @property
  def scenario(self) -> np.ndarray:
    return np.zeros(self.info.num_users, np.int64)


def filter_events(user: np.ndarray, key: np.ndarray, domain: np.ndarray, num_users: int,
                  num_keys: int, kcore: int) -> Tuple[np.ndarray, int]:
  """Which positive events are kept: users with a positive in both domains, and with
  `kcore` > 1 users and items with >= kcore positives, repeated until nothing changes.

  Returns:
    (<bool>[n] kept, passes).
  """
  keep = np.ones(len(user), bool)
  rounds = 0
  while True:
    rounds += 1
    ok = np.ones(num_users, bool)
    for d in (schema.SOURCE, schema.TARGET):
      ok &= np.bincount(user[keep & (domain == d)], minlength=num_users) > 0
    new = keep & ok[user]
    if kcore > 1:
      new &= (np.bincount(user[keep], minlength=num_users) >= kcore)[user]
      new &= (np.bincount(key[keep], minlength=num_keys) >= kcore)[key]
    if np.array_equal(new, keep):
      return keep, rounds
    keep = new


def _vocab(counts: collections.Counter, min_count: int) -> List[str]:
  """Names with count >= min_count, most frequent first (ties by name); id = index + 1."""
  return sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))


def item_tags(meta: Optional[ItemMeta]) -> List[str]:
  """An item's tag names, most specific first: "brand:<brand>", then the category path entries
  from the leaves up, one level of every path at a time; no repeats."""
  if meta is None:
    return []
  out = [f"brand:{meta.brand}"] if meta.brand else []
  depth = max((len(p) for p in meta.categories), default=0)
  for k in range(1, depth + 1):
    out += [p[-k] for p in meta.categories if len(p) >= k]
  return list(dict.fromkeys(out))


def _item_features(metas: Sequence[Optional[ItemMeta]], config: ConvertConfig,
                   dropped: Dict[str, int]):
  """(category, tags, title arrays (row = item id), names) of the items in id order."""
  tag_lists = [item_tags(m) for m in metas]
  words = [_WORD.findall(m.title.lower()) if m is not None else [] for m in metas]
  leaves = [m.categories[0][-1] if m is not None and m.categories else NO_CATEGORY
            for m in metas]
  tag_count = collections.Counter(t for ts in tag_lists for t in ts)
  token_count = collections.Counter(w for ws in words for w in set(ws))
  tags = _vocab(tag_count, config.min_tag_count)
  tokens = _vocab(token_count, config.min_token_count)
  categories = _vocab(collections.Counter(leaves), 1)
  tag_id = {t: i + 1 for i, t in enumerate(tags)}
  token_id = {w: i + 1 for i, w in enumerate(tokens)}
  cat_id = {c: i + 1 for i, c in enumerate(categories)}
  n = len(metas) + 1
  tag_arr = np.zeros([n, schema.MAX_TAGS], np.int64)
  title = np.zeros([n, schema.MAX_TITLE_LEN], np.int64)
  category = np.zeros(n, np.int64)
  rare_tags = cut_tags = rare_words = cut_words = 0
  for item, (ts, ws, leaf) in enumerate(zip(tag_lists, words, leaves), 1):
    ids = [tag_id[t] for t in ts if t in tag_id]
    rare_tags += len(ts) - len(ids)
    cut_tags += max(0, len(ids) - schema.MAX_TAGS)
    ids = ids[:schema.MAX_TAGS]
    tag_arr[item, :len(ids)] = ids
    tok = [token_id[w] for w in ws if w in token_id]
    rare_words += len(ws) - len(tok)
    cut_words += max(0, len(tok) - schema.MAX_TITLE_LEN)
    tok = tok[:schema.MAX_TITLE_LEN]
    title[item, :len(tok)] = tok
    category[item] = cat_id[leaf]
  dropped.update({
      f"distinct tags carried by fewer than {config.min_tag_count} items (dropped)":
      len(tag_count) - len(tags),
      "tag occurrences of those tags on items": rare_tags,
      f"tag occurrences beyond {schema.MAX_TAGS} per item (least specific dropped)": cut_tags,
      f"title words in fewer than {config.min_token_count} titles (dropped)": rare_words,
      f"title words beyond {schema.MAX_TITLE_LEN} per title (dropped)": cut_words,
      "items with no tag left": int((tag_arr[1:] == 0).all(axis=1).sum())})
  return category, tag_arr, title, {"categories": categories, "tags": tags, "tokens": tokens}


def prepare(raw: RawAmazon, config: ConvertConfig = ConvertConfig()) -> Prepared:
  """Positives, the both-domain (and k-core) filter, ids, the protocol, the item store."""
  src, tgt = raw.ratings
  n_src = len(src.asins)
  # The event table: the source file's rows, then the target file's, each in file order (the
  # protocol's order for equal timestamps).
  user = np.concatenate([src.user, tgt.user])
  key = np.concatenate([src.item, tgt.item + n_src])  # raw item key, per domain
  domain = np.repeat(np.asarray([schema.SOURCE, schema.TARGET], np.int64), [len(src), len(tgt)])
  time = np.concatenate([src.timestamp, tgt.timestamp])
  positive = np.concatenate([src.rating, tgt.rating]) > config.positive_above
  user, key, domain, time = user[positive], key[positive], domain[positive], time[positive]
  keep, rounds = filter_events(user, key, domain, len(raw.users), n_src + len(tgt.asins),
                               config.kcore)
  user, key, domain, time = user[keep], key[keep], domain[keep], time[keep]
  keys = np.unique(key)  # source keys first (< n_src), each domain in file order
  item_id = np.zeros(n_src + len(tgt.asins), np.int64)
  item_id[keys] = np.arange(1, len(keys) + 1)
  users = np.unique(user)  # raw user index = order of first appearance in the target file
  user_id = np.zeros(len(raw.users), np.int64)
  user_id[users] = np.arange(len(users))
  split = cold_start.protocol(user_id[user], item_id[key], domain, time, len(users),
                              config.protocol)

  item_domain = (keys >= n_src).astype(np.int64)
  asins = [src.asins[k] if k < n_src else tgt.asins[k - n_src] for k in keys]
  metas = [raw.meta[d].items.get(a) for d, a in zip(item_domain, asins)]
  dropped: Dict[str, int] = {}
  category, tags, title, names = _item_features(metas, config, dropped)
  for d, name in enumerate(("source", "target")):
    dropped[f"kept {name} items without a metadata line"] = sum(
        1 for m, dd in zip(metas, item_domain) if m is None and dd == d)
  cold = np.zeros(len(keys) + 1, np.int64)
  cold[split.cold_items] = 1
  store = ItemStore(domain=np.concatenate([[0], item_domain]), category=category, tags=tags,
                    title=title, visual=np.zeros([len(keys) + 1, 0], np.float32), cold=cold)
  names.update(items=[""] + asins, users=[raw.users[u] for u in users],
               domains=[raw.source, raw.target])

  raw_counts, kept = [], []
  for d, (r, m) in enumerate(zip(raw.ratings, raw.meta)):
    pos = r.rating > config.positive_above
    raw_counts.append({"lines": r.lines, "rows kept from the file": len(r),
                       "rows of users without a target rating": r.other_users,
                       "positives": int(pos.sum()),
                       "users with a positive": len(np.unique(r.user[pos])),
                       "items with a positive": len(np.unique(r.item[pos])),
                       "metadata lines": m.lines, "metadata lines of other items": m.skipped,
                       "repeated metadata lines (ignored)": m.duplicates,
                       "blank metadata lines": m.blank})
    in_d = item_domain == d
    kept.append({"users": len(np.unique(split.user[split.domain == d])),
                 "items": int(in_d.sum()),
                 "tags": len(np.setdiff1d(np.unique(tags[1:][in_d]), [0])),
                 "interactions": int((split.domain == d).sum())})
  info = _dataset_info(raw, config, store, names, split, rounds)
  return Prepared(config=config, info=info, store=store, names=names, split=split,
                  raw_counts=tuple(raw_counts), kept=tuple(kept), dropped=dropped,
                  rounds=rounds)


def _dataset_info(raw: RawAmazon, config: ConvertConfig, store: ItemStore,
                  names: Dict[str, list], split: cold_start.ColdStartSplit,
                  rounds: int) -> DatasetInfo:
  extra = {"converter": "tfrec.datasets.amazon", "config": dataclasses.asdict(config),
           "source": raw.source, "target": raw.target,
           "splits": {"matching": list(cold_start.splits(config.protocol))},
           "cold_split": cold_start.COLD_SPLIT,
           "raw": {"path": os.path.abspath(raw.path),
                   "files": [r.path for r in raw.ratings] + [m.path for m in raw.meta]},
           "rule": cold_start.rule(split), "filter_passes": rounds,
           "counts": cold_start.counts(split), "user_features": "none (zeros)",
           "vocab_file": "vocab.json"}
  return DatasetInfo(name=f"amazon/{raw.source}-{raw.target}", num_users=split.num_users,
                     num_items=store.num_items, num_scenarios=1,
                     num_categories=len(names["categories"]), num_tags=len(names["tags"]),
                     num_tokens=len(names["tokens"]),
                     user_feature_sizes=(1,) * schema.NUM_USER_FEATURES, visual_dim=0,
                     extra=extra, max_seq_len=config.protocol.max_seq_len)


def write(p: Prepared, out_dir: str, num_shards: int = 16) -> None:
  """Writes matching/{train,valid,test_cold}, seen_items/{valid,test_cold}.npz, items.npz,
  vocab.json and dataset.json (staged; dataset.json last)."""
  with _convert.staged(out_dir, p.store, p.info) as stage:
    with open(os.path.join(stage, "vocab.json"), "w") as f:
      json.dump(p.names, f, ensure_ascii=False, indent=0)
    cold_start.write(p.split, stage, p.info, p.user_features, p.scenario, num_shards)


__all__ = ["ConvertConfig", "Prepared", "filter_events", "item_tags", "prepare", "write"]
