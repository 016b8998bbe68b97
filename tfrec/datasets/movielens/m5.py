"""MovieLens-1M for M5 (Zhao et al., "M5: Multi-Modal Multi-Interest Multi-Scenario Matching for
Over-the-Top Recommendation", KDD 2023) as `matching` records: `--view=m5`.

    python -m tfrec.datasets.movielens --out DIR --view=m5 [--num_shards=4] [--raw_dir=...]
        [--source=...]

The two-domain view's conversion (`conversion.prepare`, the rules of `tfrec.datasets.movielens`)
with the options of `M5_CONFIG`; only where M5 needs it does this view differ:

  * one catalogue (`target_genres` = all 18 genres, `max_target_share` = 1): M5 matches a user
    to any show, with a softmax over the whole catalogue (§5.1.3), so every movie is in the
    target domain (`seq_domain_ids` all 1) and every positive is a matching target. Item ids
    1..3883 in raw file order; no cold movie (`cold_share` = 0: M5 has no item cold start).
  * scenario (§4.4, §5.1.1: Dataset-D's scenarios are regions) = the two-domain view's US zip
    region group (`conversion._users`, `ConvertConfig.scenario_of_region`): 0 east (zip 0-2),
    1 south (3, 7), 2 midwest (4-6), 3 west (8-9), 4 other (a zip not starting with a digit).
    Measured on ML-1M: users 1,765 / 805 / 1,696 / 1,774 / 0 (every zip starts with a digit;
    num_scenarios stays 5, as in the other views: `scenario_of_region` changes it).
  * item kind (`item_kind="genre"`; §4.3.1's behaviour buckets, on Hulu VOD series / VOD movies /
    Live, whose audiences differ) = 1 + the index of the group of `conversion.GENRE_KINDS`
    holding the movie's primary genre (the first listed; ML-1M lists genres alphabetically, so
    an "Action|Comedy" movie is action):
        1 action    Action, Adventure, Fantasy, Sci-Fi, War, Western
        2 comedy    Comedy, Musical, Romance
        3 drama     Documentary, Drama
        4 thriller  Crime, Film-Noir, Horror, Mystery, Thriller
        5 family    Animation, Children's
    ML-1M has one kind of item (a film), so the kinds are what separates audiences among films:
    spectacle, comedy and romance, drama, suspense, and films for children. Five groups keep
    every bucket filled (M5 extracts one interest per bucket; most of the 18 genres hold < 2% of
    the ratings as primary genre). Measured on ML-1M: movies 751 / 1,099 / 1,299 / 555 / 179;
    share of the positives 29.9% / 28.1% / 24.4% / 11.9% / 5.8%; users with a positive of the
    kind 5,927 / 5,882 / 5,834 / 5,315 / 4,562 of 6,038. dataset.json: num_item_kinds = 5,
    extra.item_kinds the names and the genres of each; vocab.json "item_kinds" the names.
  * behaviours and subsidiary features (§4.3.1): the two-domain view's. A behaviour is a
    positive (rating >= 4); the matching record at each positive holds the last <= 100
    positives strictly before it and `seq_subsidiary` per behaviour =
        [0] watch count     1.0: a rating is one viewing; ML-1M holds at most one rating per
                            user and movie (measured: no repeated pair), so it is always 1
                            (kept so the contract's two columns keep their meaning)
        [1] playback        the rating in stars, 1..5 (4 or 5 in these positives-only
                            histories): the intensity of the viewing, in place of the playback
                            hours ML-1M does not have. M5's "normalised playback" (playback /
                            watch count, `subsidiary_intensity.subsidiary_features`) is then
                            the stars too. The same columns as the two-domain and sequential
                            views.
  * split (§5.1.1: "the last-day behavior as the test set"), `split="last_positive_day"`: per
    user, T_u = 00:00 UTC of the day of the user's newest positive; test = the records at
    t >= T_u (the positives of that day; a later non-positive rating moves nothing); valid =
    the records of the user's previous day with a positive (from 00:00 UTC of that day to
    T_u); train = the records before. Histories cross the cuts (a test record's history holds
    the earlier days' positives and the same day's earlier ones). A user whose positives all
    fall on one day has test records only (none for the day's first positive: nothing before
    it) and cold_user = 1 (no positive before T_u); one with two such days has no train
    record. Days are UTC days, not the users' local ones (the users are in the US).
    Measured on ML-1M (positives, before histories drop any): 6,038 users with a positive,
    3,593 of them on one day only and 972 on two; 265,575 of the 575,281 positives (46.2%)
    are on their user's last day, 85,982 (14.9%) on the previous one, 223,724 (38.9%) before
    (all from the 1,473 users with three days or more): 60% of the users liked every movie
    they liked on one day, so this test set is far larger than M5's (one day of 31).

Written: matching/{train,valid,test}; seen_items/{valid,test}.npz (`tfrec.data.seen_items`,
per user with a record in the split, every positive before the split's period: with each
record's own sequence, which holds the positives just before it, evaluation excludes the
user's history before the positive, not only the <= 100 behaviours of the sequence; the
exception: a same-day positive further back than the sequence the reader keeps, and a positive
in the same second, which no history holds); items.npz, vocab.json, dataset.json
(name "movielens/ml-1m-m5", extra.view = "m5", the rules and counts) and DIR/stats.md (records
per split and scenario, the kinds, the users by number of days). HR@20/100 per scenario
(§5.1.1): `python -m tfrec.evaluate ... --splits=test --protocol=full --retrieval_ks=20,100`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterator, List, Tuple

import numpy as np

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.data import schema, seen_items
from tfrec.data.info import DatasetInfo
from tfrec.data.tfrecord_io import ShardedWriter
from tfrec.datasets import _convert
from tfrec.datasets.movielens.conversion import (DAY_S, GENRE_KINDS, GENRES, SCENARIO_NAMES,
                                                 ConvertConfig, Prepared, prepare as _prepare,
                                                 records)
from tfrec.datasets.movielens.raw import RawMovieLens

SPLITS = ("train", "valid", "test")
SEEN_SPLITS = ("valid", "test")
M5_CONFIG = ConvertConfig(target_genres=GENRES, max_target_share=1.0, cold_share=0.0,
                          item_kind="genre", split="last_positive_day")
SUBSIDIARY = ("watch count: 1.0 per rating (ML-1M rates a movie at most once per user)",
              "playback: the rating in stars (1..5; 4-5 in positives-only histories)")


def _split_rule(config: ConvertConfig) -> str:
  if config.split == "last_positive_day":
    return ("per user, test = t >= 00:00 UTC of the day of the user's newest positive; valid = "
            "from 00:00 UTC of the user's previous day with a positive; train = before")
  return f"the two-domain view's split={config.split!r} (tfrec.datasets.movielens)"


def prepare(raw: RawMovieLens, config: ConvertConfig = M5_CONFIG) -> Prepared:
  """`conversion.prepare` with `config` (default `M5_CONFIG`), and dataset.json for this view.

  Raises:
    ValueError: a config whose target is not every genre (the view has one catalogue).
  """
  if set(config.target_genres) != set(GENRES):
    raise ValueError(f"the m5 view has one domain: target_genres must be all of {GENRES}, "
                     f"not {config.target_genres}")
  p = _prepare(raw, config)
  ev = p.events
  pos = ev.label == 1
  kinds = p.names["item_kinds"][1:]
  genres = dict(GENRE_KINDS) if config.item_kind == "genre" else {}
  extra = {"converter": "tfrec.datasets.movielens.m5", "view": "m5",
           "config": dataclasses.asdict(config), "splits": {"matching": list(SPLITS)},
           "seen_items": list(SEEN_SPLITS),
           "raw": p.info.extra["raw"],
           "item_kinds": {"rule": ("1 + the index of the group holding the primary genre"
                                   if genres else "release-decade group"),
                          "names": kinds,
                          **({"genres": {k: list(genres[k]) for k in kinds}} if genres else {})},
           "subsidiary": list(SUBSIDIARY),
           "split_rule": _split_rule(config),
           "counts": {"positives": int(pos.sum()),
                      "users_with_positives": int(len(np.unique(ev.user[pos]))),
                      **{f"matching/{s}": len(p.plans["matching", s].rows) for s in SPLITS}},
           "scenario_names": list(SCENARIO_NAMES[:config.num_scenarios]),
           "user_features": list(schema.USER_FEATURE_NAMES), "vocab_file": "vocab.json"}
  # Through JSON, so that the info equals the dataset.json read back (tuples become lists).
  p.info = dataclasses.replace(p.info, name="movielens/ml-1m-m5",
                               extra=json.loads(json.dumps(extra)))
  return p


def seen_rows(p: Prepared, split: str) -> Iterator[Tuple[int, np.ndarray]]:
  """Yields (user, <int64>[k] item ids oldest first) for each user with a record in `split`:
  the user's positives before the split's period (valid: t < V_u; test: t < T_u)."""
  if split not in SEEN_SPLITS:
    raise ValueError(f"seen items are written for {SEEN_SPLITS}, not {split!r}")
  ev = p.events
  before = ~ev.test & (~ev.valid if split == "valid" else True)
  rows = np.nonzero((ev.label == 1) & ~ev.cold & before)[0]  # In (user, time, item) order.
  starts = np.searchsorted(ev.user[rows], np.arange(p.info.num_users + 1))
  for u in np.unique(ev.user[p.plans["matching", split].rows]):
    yield int(u), ev.item[rows[starts[u]:starts[u + 1]]]


def _days_table(p: Prepared) -> List[str]:
  """Users by the number of UTC days with a positive, and where their records land."""
  ev = p.events
  pos = (ev.label == 1) & ~ev.cold
  user_day = np.unique(np.stack([ev.user[pos], ev.t[pos] // DAY_S], axis=1), axis=0)
  days = np.bincount(user_day[:, 0], minlength=p.info.num_users)
  lines = ["| days with a positive | users | positives | matching train | valid | test |",
           "|---|---:|---:|---:|---:|---:|"]
  recs = {s: np.bincount(ev.user[p.plans["matching", s].rows], minlength=p.info.num_users)
          for s in SPLITS}
  n_pos = np.bincount(ev.user[pos], minlength=p.info.num_users)
  for label, sel in (("1", days == 1), ("2", days == 2), (">= 3", days >= 3)):
    lines.append(f"| {label} | {int(sel.sum()):,} | {int(n_pos[sel].sum()):,} | "
                 + " | ".join(f"{int(recs[s][sel].sum()):,}" for s in SPLITS) + " |")
  return lines


def _kind_table(p: Prepared) -> List[str]:
  ev, kinds = p.events, p.store.kind
  pos = ev.label == 1
  genres = p.info.extra["item_kinds"].get("genres", {})
  lines = ["| kind | name | genres | movies | positives (share) | test positives |",
           "|---:|---|---|---:|---:|---:|"]
  test = p.plans["matching", "test"].rows
  for k, name in enumerate(p.names["item_kinds"][1:], 1):
    n = int((kinds[ev.item[pos]] == k).sum())
    lines.append(f"| {k} | {name} | {', '.join(genres.get(name, [])) or '-'} | "
                 f"{int((kinds[1:] == k).sum()):,} | {n:,} ({n / max(int(pos.sum()), 1):.1%}) | "
                 f"{int((kinds[ev.item[test]] == k).sum()):,} |")
  return lines


def statistics(p: Prepared, seconds: float = float("nan")) -> str:
  """Markdown: records per split, per scenario, per kind; users by number of days."""
  ev = p.events
  lines = [f"# {p.info.name}: MovieLens-1M for M5 (KDD 2023) - {p.info.num_users:,} users, "
           f"{p.info.num_items:,} movies, {len(ev.t):,} ratings (converted in {seconds:.1f} s)",
           "", f"Split: {p.info.extra['split_rule']}.", "",
           f"Behaviours: ratings >= {p.config.positive_min}; seq_subsidiary = ["
           + "; ".join(SUBSIDIARY) + "].", "",
           "| matching split | records | users | items | avg seq length | cold users |",
           "|---|---:|---:|---:|---:|---:|"]
  for s in SPLITS:
    plan = p.plans["matching", s]
    lo, hi = plan.windows["mixed"]
    users = np.unique(ev.user[plan.rows])
    lines.append(f"| {s} | {len(plan.rows):,} | {len(users):,} | "
                 f"{len(np.unique(ev.item[plan.rows])):,} | "
                 f"{float(np.mean(hi - lo)) if len(lo) else 0:.2f} | "
                 f"{int(p.cold_user[users].sum()):,} |")
  lines += ["", *_days_table(p), "",
            "Users with one day have test records only (cold_user = 1); with two, no train "
            "record.", "", *_kind_table(p), "",
            "| scenario | users | " + " | ".join(f"{s} records" for s in SPLITS) + " |",
            "|---|---:|" + "---:|" * len(SPLITS)]
  scen = {s: np.bincount(p.scenario[ev.user[p.plans["matching", s].rows]],
                         minlength=p.config.num_scenarios) for s in SPLITS}
  users = np.bincount(p.scenario, minlength=p.config.num_scenarios)
  for i in range(p.config.num_scenarios):
    name = SCENARIO_NAMES[i] if i < len(SCENARIO_NAMES) else str(i)
    lines.append(f"| {i} {name} | {int(users[i]):,} | "
                 + " | ".join(f"{int(scen[s][i]):,}" for s in SPLITS) + " |")
  lines += ["", "Skipped (counted, never silent):"]
  lines += [f"- {k}: {n:,}" for k, n in p.skipped.items() if k.startswith("matching/")]
  return "\n".join(lines) + "\n"


def write(p: Prepared, out_dir: str, num_shards: int = 4) -> None:
  """Writes matching/{train,valid,test}, seen_items/{valid,test}.npz, items.npz, vocab.json and
  dataset.json (staged, atomic: dataset.json lands last). Each record is checked against the
  contract by `ShardedWriter`."""
  with _convert.staged(out_dir, p.store, p.info) as stage:
    with open(os.path.join(stage, "vocab.json"), "w") as f:
      json.dump(p.names, f, ensure_ascii=False, indent=0)
    for split in SPLITS:
      with ShardedWriter(stage, "matching", split, num_shards, info=p.info) as w:
        for rec in records(p, "matching", split):
          w.write(rec, shard=int(rec["user_id"]) % num_shards)
    for split in SEEN_SPLITS:
      seen_items.write(stage, split, seen_rows(p, split))


def convert_m5(raw: RawMovieLens, out_dir: str, config: ConvertConfig = M5_CONFIG,
               num_shards: int = 4, verbose: bool = True) -> DatasetInfo:
  """prepare + write + DIR/stats.md; returns the dataset's `DatasetInfo`."""
  return _convert.run(prepare, write, statistics, raw, config, out_dir, num_shards, verbose)


__all__ = ["GENRE_KINDS", "M5_CONFIG", "SEEN_SPLITS", "SPLITS", "SUBSIDIARY", "convert_m5",
           "prepare", "seen_rows", "statistics", "write"]
