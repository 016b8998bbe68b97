"""MovieLens-1M in COUPLE's cross-domain cold-start protocol (Cao et al., COUPLE §4.1.2) as
`matching` records: `--view=couple`.

    python -m tfrec.datasets.movielens --out DIR --view=couple [--couple_max_len=100]
        [--couple_valid] [--seed=0] [--target_genres=...] [--max_target_share=0.3]
        [--raw_dir=...] [--source=...]

Domains, items and users are the two-domain view's (`tfrec.datasets.movielens`): a movie's
domain is that of its primary genre (default target = the 15 sparse genres), item ids 1..3883
(source movies first, then target, each in raw file order; the same ids as the two-domain
view), category / tags (every genre, the release decade, frequent title words: COUPLE's items
are their tags) / title / kind from `conversion._item_store`, user features and scenario from
`conversion._users`, user id = the raw file row.

Events: the positives of the two-domain view, ratings >= `positive_min` = 4 (COUPLE: "review
ratings over 3"), both domains, at their timestamps; equal timestamps keep the raw file order
(ML-1M holds many ratings in the same second). The split is `tfrec.datasets.cold_start.protocol`
(test_cold = each user's last target positive, its movies `cold`; valid = the second-to-last
once the cold movies are erased, its movies erased from train; half of the test users cold:
no target movie in their histories and no train record; empty histories dropped and counted).
Written: matching/{train,valid,test_cold}, seen_items/{valid,test_cold}.npz, items.npz,
vocab.json, dataset.json (extra.view = "couple", the rule and its counts) and DIR/stats.md
beside COUPLE's Table 3.

On a catalogue as small as ML-1M's target (1,180 movies for 6,040 users) the last positives of
all users cover a large share of the target movies, and erasing them (and the valid ones) from
training removes a large share of the target positives: stats.md says how many.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict

import numpy as np

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.data import schema
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.datasets import _convert, cold_start
from tfrec.datasets.movielens.conversion import (DEFAULT_TARGET_GENRES, GENRES,
                                                 USER_FEATURE_SIZES, ConvertConfig, _domains,
                                                 _item_store, _users)
from tfrec.datasets.movielens.raw import RawMovieLens


@dataclasses.dataclass(frozen=True)
class CoupleConfig:
  """The choices of the couple view (module docstring).

  Attributes:
    target_genres: primary genres of the target domain (the two-domain view's).
    max_target_share: the two-domain view's refusal of a dense target.
    positive_min: rating >= this is a positive event (COUPLE: > 3).
    protocol: the cold-start protocol's choices (`cold_start.ColdStartConfig`). MovieLens
      holds a user's test and valid positives on a seeded 10% of the target movies
      (`cold_item_share`, the two-domain view's cold share): under the paper's rule every
      popular movie is somebody's last positive, and erasing those left 70 training records
      of 146,344 target positives (measured).
  """

  target_genres: tuple = DEFAULT_TARGET_GENRES
  max_target_share: float = 0.30
  positive_min: int = 4
  protocol: cold_start.ColdStartConfig = cold_start.ColdStartConfig(cold_item_share=0.1)

  def __post_init__(self):
    if not 1 <= self.positive_min <= 5:
      raise ValueError(f"positive_min must be in 1..5, not {self.positive_min}")

  def conversion(self) -> ConvertConfig:
    """The two-domain view's config that gives this view's domains, items and users."""
    return ConvertConfig(target_genres=tuple(self.target_genres),
                         max_target_share=self.max_target_share)


@dataclasses.dataclass
class CoupleView:
  """The planned view (no files yet): the protocol's split plus items and users."""

  config: CoupleConfig
  info: DatasetInfo
  store: ItemStore
  names: Dict[str, list]
  user_features: np.ndarray
  scenario: np.ndarray
  split: cold_start.ColdStartSplit


def prepare(raw: RawMovieLens, config: CoupleConfig = CoupleConfig()) -> CoupleView:
  """Domains and ids as the two-domain view, positives -> `cold_start.protocol`, item store
  with the protocol's cold movies."""
  conv = config.conversion()
  domain_of_row = _domains(raw, conv)
  row_of_item = np.lexsort((np.arange(raw.num_movies), domain_of_row))
  item_of_row = np.empty(raw.num_movies, np.int64)
  item_of_row[row_of_item] = np.arange(1, raw.num_movies + 1)
  pos = raw.rating >= config.positive_min  # raw file order: ties keep it
  movie = raw.rating_movie[pos]
  split = cold_start.protocol(raw.rating_user[pos], item_of_row[movie], domain_of_row[movie],
                              raw.timestamp[pos], raw.num_users, config.protocol)
  cold = np.zeros(raw.num_movies, np.int64)
  cold[split.cold_items - 1] = 1
  store, names = _item_store(raw, row_of_item, domain_of_row[row_of_item], cold, conv)
  feats, scenario, _ = _users(raw, conv)
  extra = {"converter": "tfrec.datasets.movielens.couple", "view": "couple",
           "config": dataclasses.asdict(config),
           "splits": {"matching": list(cold_start.splits(config.protocol))},
           "cold_split": cold_start.COLD_SPLIT,
           "raw": {"format": raw.fmt, "path": os.path.abspath(raw.path)},
           "source_genres": [g for g in GENRES if g not in config.target_genres],
           "target_genres": list(config.target_genres), "rule": cold_start.rule(split),
           "counts": cold_start.counts(split),
           "scenario_names": ["east", "south", "midwest", "west", "other"],
           "user_features": list(schema.USER_FEATURE_NAMES), "vocab_file": "vocab.json"}
  info = DatasetInfo(name="movielens/ml-1m-couple", num_users=raw.num_users,
                     num_items=store.num_items, num_scenarios=conv.num_scenarios,
                     num_categories=len(GENRES), num_tags=len(names["tags"]),
                     num_tokens=len(names["tokens"]), user_feature_sizes=USER_FEATURE_SIZES,
                     visual_dim=0, extra=extra, max_seq_len=config.protocol.max_seq_len,
                     num_item_kinds=int(store.kind.max()) if store.num_items else 0)
  return CoupleView(config=config, info=info, store=store, names=names, user_features=feats,
                    scenario=scenario, split=split)


def statistics(view: CoupleView, seconds: float = 0.0) -> str:
  """Markdown: the split beside COUPLE's Table 3, what was dropped and erased, the domains."""
  s, store = view.split, view.store
  lines = ["# MovieLens-1M, COUPLE's cold-start view (COUPLE §4.1)", "",
           f"Rule: {cold_start.rule(s)}.", "",
           "COUPLE has no MovieLens row: its Table 3 rows are Amazon and TPMV, for scale.", ""]
  lines += cold_start.statistics_lines(s)
  lines += ["", "| domain | movies (cold) | positives | users with positives |",
            "|---|---:|---:|---:|"]
  for d, name in enumerate(schema.DOMAIN_NAMES):
    in_d = store.domain[1:] == d
    m = s.domain == d
    lines.append(f"| {name} | {int(in_d.sum()):,} ({int(store.cold[1:][in_d].sum()):,}) | "
                 f"{int(m.sum()):,} | {len(np.unique(s.user[m])):,} |")
  if seconds:
    lines += ["", f"Built in {seconds:.1f} s."]
  return "\n".join(lines) + "\n"


def write(view: CoupleView, out_dir: str, num_shards: int = 4) -> None:
  """Writes matching/{train,valid,test_cold}, seen_items/{valid,test_cold}.npz, items.npz,
  vocab.json, dataset.json (staged, atomic: dataset.json lands last)."""
  with _convert.staged(out_dir, view.store, view.info) as stage:
    with open(os.path.join(stage, "vocab.json"), "w") as f:
      json.dump(view.names, f, ensure_ascii=False, indent=0)
    cold_start.write(view.split, stage, view.info, view.user_features, view.scenario,
                     num_shards)


def convert_couple(raw: RawMovieLens, out_dir: str, config: CoupleConfig = CoupleConfig(),
                   num_shards: int = 4, verbose: bool = True) -> DatasetInfo:
  """prepare + write + DIR/stats.md; returns the dataset's `DatasetInfo`."""
  return _convert.run(prepare, write, statistics, raw, config, out_dir, num_shards, verbose)


__all__ = ["CoupleConfig", "CoupleView", "convert_couple", "prepare", "statistics", "write"]
