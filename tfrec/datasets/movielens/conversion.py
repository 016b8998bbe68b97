"""MovieLens-1M -> records of the tfrec contract: `ConvertConfig`, `prepare` (vectorised planning of
every record), `records`, `write`. The conversion is described in `tfrec.datasets.movielens`."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.data import schema
from tfrec.data.info import DatasetInfo
from tfrec.datasets import _convert
from tfrec.data.item_store import ItemStore
from tfrec.datasets.movielens.raw import AGES, GENRES, NUM_OCCUPATIONS, RawMovieLens
from tfrec.data.tfrecord_io import ShardedWriter

__all__ = ["ConvertConfig", "Prepared", "prepare", "records", "num_records", "write",
           "genre_shares", "SPLITS", "SPLIT_RULES", "ITEM_KIND_RULES", "GENRE_KINDS",
           "DEFAULT_TARGET_GENRES"]

DAY_S = 86_400
DEFAULT_SOURCE_GENRES = ("Action", "Comedy", "Drama")
DEFAULT_TARGET_GENRES = tuple(g for g in GENRES if g not in DEFAULT_SOURCE_GENRES)
NON_DIGIT_REGION = 10
SCENARIO_NAMES = ("east", "south", "midwest", "west", "other")
SPLIT_RULES = ("share", "last_day", "last_positive_day")
ITEM_KIND_RULES = ("decade", "genre")
# item_kind="genre" (the M5 view, `tfrec.datasets.movielens.m5`, which says why these groups):
# kind = 1 + the index of the group holding the movie's primary genre.
GENRE_KINDS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("action", ("Action", "Adventure", "Fantasy", "Sci-Fi", "War", "Western")),
    ("comedy", ("Comedy", "Musical", "Romance")),
    ("drama", ("Documentary", "Drama")),
    ("thriller", ("Crime", "Film-Noir", "Horror", "Mystery", "Thriller")),
    ("family", ("Animation", "Children's")),
)
USER_FEATURE_SIZES = (2, len(AGES), NUM_OCCUPATIONS, NON_DIGIT_REGION + 1)
TITLE_STOPWORDS = frozenset(
    "a about all an and at be by de do don el for from get i in is it la le les me my no of "
    "on or out s t that the to up what who with you".split())
SPLITS: Dict[str, Tuple[str, ...]] = {
    "ranking": ("train", "valid", "test", "test_cold"),
    "matching": ("train", "valid", "test"),
    "ccl_pair": ("train",),
    "dual_pair": ("train", "valid", "test"),
}
_WORD = re.compile(r"[^\W_]+")
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
  """Every choice of the conversion (the module docstring says what each one does)."""

  target_genres: Tuple[str, ...] = DEFAULT_TARGET_GENRES  # primary genres of the target
  max_target_share: float = 0.30   # max share of all ratings on target movies
  positive_min: int = 4            # rating >= this: label 1
  negative_max: int = 2            # rating <= this: label 0; in between: dropped
  max_history: int = schema.MAX_SEQ_LEN  # per-domain history (ranking, ccl_pair); above 50
                                         # it becomes the dataset's max_seq_len
  max_match_history: int = schema.MAX_MATCH_SEQ_LEN  # mixed sequence (matching)
  split: str = "share"             # "share" (last test_share of events), "last_day" or
                                   # "last_positive_day" (test and valid by day, the M5 view)
  test_share: float = 0.2          # of each user's labelled warm target events
  valid_share: float = 0.1         # of each user's training-period ones (before the test cut)
  cold_share: float = 0.1          # of the target movies with labelled events
  cold_events: str = "all"         # ranking/test_cold: "all" or "test_period" events
  session_gap_s: int = 3_600       # ccl_pair sessions: a longer gap starts a new one
  title_tag_min_count: int = 10    # a title word is a tag when in >= this many titles
  scenario_of_region: Tuple[int, ...] = (0, 0, 0, 1, 2, 2, 2, 1, 3, 3, 4)  # region -> scenario
  seed: int = 0                    # of the cold-movie choice
  item_kind: str = "decade"        # item store kind: "decade" (release-decade group) or
                                   # "genre" (primary-genre group, `GENRE_KINDS`)

  def __post_init__(self):
    unknown = [g for g in self.target_genres if g not in GENRES]
    if unknown or not self.target_genres:
      raise ValueError(f"target_genres {self.target_genres}: need a non-empty subset of "
                       f"{GENRES} (unknown: {unknown}; all of them: one domain, every movie "
                       "in the target)")
    if not 1 <= self.negative_max < self.positive_min <= 5:
      raise ValueError("need 1 <= negative_max < positive_min <= 5")
    if self.max_history < 1:
      raise ValueError("max_history must be >= 1")
    if not 1 <= self.max_match_history <= schema.MAX_MATCH_SEQ_LEN:
      raise ValueError(f"max_match_history must be in 1..{schema.MAX_MATCH_SEQ_LEN}")
    if self.split not in SPLIT_RULES or self.cold_events not in ("all", "test_period"):
      raise ValueError(f"split must be one of {SPLIT_RULES}, cold_events all|test_period")
    if self.item_kind not in ITEM_KIND_RULES:
      raise ValueError(f"item_kind must be one of {ITEM_KIND_RULES}, not {self.item_kind!r}")
    if not (0 <= self.test_share < 1 and 0 <= self.valid_share < 1
            and 0 <= self.cold_share < 1):
      raise ValueError("test_share, valid_share and cold_share must be in [0, 1)")
    if len(self.scenario_of_region) != NON_DIGIT_REGION + 1 or min(self.scenario_of_region) < 0:
      raise ValueError(f"scenario_of_region needs {NON_DIGIT_REGION + 1} ids >= 0")

  @property
  def num_scenarios(self) -> int:
    return max(self.scenario_of_region) + 1


# ----------------------------------------------------------------------------- items


def genre_shares(raw: RawMovieLens) -> Dict[str, float]:
  """Share of all ratings per primary genre, in `GENRES` order."""
  primary = np.array([GENRES.index(g[0]) for g in raw.genres], np.int64)
  counts = np.bincount(primary[raw.rating_movie], minlength=len(GENRES))
  return {g: counts[i] / max(raw.num_ratings, 1) for i, g in enumerate(GENRES)}


def _domains(raw: RawMovieLens, config: ConvertConfig) -> np.ndarray:
  """<int64>[M] domain of each raw movie row; raises if the target is too dense."""
  domain = np.array([int(g[0] in config.target_genres) for g in raw.genres], np.int64)
  share = float(domain[raw.rating_movie].mean()) if raw.num_ratings else 0.0
  if share > config.max_target_share:
    shares = {g: round(float(s), 4) for g, s in genre_shares(raw).items() if s}
    raise ValueError(f"target genres {list(config.target_genres)} hold {share:.1%} of the "
                     f"ratings > max_target_share {config.max_target_share:.0%}; primary-genre "
                     f"shares: {shares}")
  return domain


def _words(title: str) -> List[str]:
  return _WORD.findall(_YEAR_SUFFIX.sub("", title).lower())


def _vocab(counts: collections.Counter, min_count: int = 1) -> List[str]:
  """Words with count >= min_count, most frequent first (ties alphabetical); id = index + 1."""
  return sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))


def _item_store(raw: RawMovieLens, row_of_item: np.ndarray, domain: np.ndarray,
                cold: np.ndarray, config: ConvertConfig) -> Tuple[ItemStore, Dict[str, list]]:
  """The item store (row = item id) and the names of every tag, token and item."""
  words = [_words(raw.titles[r]) for r in row_of_item]
  tokens = _vocab(collections.Counter(w for ws in words for w in ws))
  tag_words = _vocab(collections.Counter(w for ws in words for w in set(ws)
                                         if w not in TITLE_STOPWORDS and
                                         (len(w) > 1 or w.isdigit())), config.title_tag_min_count)
  decades = sorted({int(y) // 10 * 10 for y in raw.years})
  tag_names = list(GENRES) + [f"{d}s" for d in decades] + [f"word:{w}" for w in tag_words]
  tag_id = {t: i + 1 for i, t in enumerate(tag_names)}
  token_id = {w: i + 1 for i, w in enumerate(tokens)}
  n = len(row_of_item) + 1
  tags = np.zeros([n, schema.MAX_TAGS], np.int64)
  title = np.zeros([n, schema.MAX_TITLE_LEN], np.int64)
  category = np.zeros(n, np.int64)
  for item, (row, ws) in enumerate(zip(row_of_item, words), 1):
    genres = raw.genres[row]
    category[item] = GENRES.index(genres[0]) + 1
    ids = [tag_id[g] for g in genres] + [tag_id[f"{int(raw.years[row]) // 10 * 10}s"]]
    ids += [tag_id[f"word:{w}"] for w in dict.fromkeys(ws) if f"word:{w}" in tag_id]
    ids = ids[:schema.MAX_TAGS]
    tags[item, :len(ids)] = ids
    tok = [token_id[w] for w in ws][:schema.MAX_TITLE_LEN]
    title[item, :len(tok)] = tok
  kind = np.zeros(n, np.int64)
  if config.item_kind == "genre":
    # kind = 1 + the index of the group of `GENRE_KINDS` holding the movie's primary genre;
    # num_item_kinds = the number of groups (present or not).
    group = {g: k for k, (_, genres) in enumerate(GENRE_KINDS, 1) for g in genres}
    kind[1:] = [group[raw.genres[r][0]] for r in row_of_item]
    kind_names = [name for name, _ in GENRE_KINDS]
  else:
    # kind = release-decade group: 1 + the index of the movie's decade among the decades present
    # (ML-1M: 1910s..2000s -> 1..10); num_item_kinds = the number of decades.
    kind[1:] = [decades.index(int(raw.years[r]) // 10 * 10) + 1 for r in row_of_item]
    kind_names = [f"{d}s" for d in decades]
  store = ItemStore(domain=np.concatenate([[0], domain]), category=category, tags=tags,
                    title=title, visual=np.zeros([n, 0], np.float32),
                    cold=np.concatenate([[0], cold]).astype(np.int64), kind=kind)
  names = {"categories": list(GENRES), "tags": tag_names, "tokens": tokens,
           "items": [""] + [raw.titles[r] for r in row_of_item],
           "item_kinds": [""] + kind_names}
  return store, names


# ----------------------------------------------------------------------------- users


def _users(raw: RawMovieLens, config: ConvertConfig) -> Tuple[np.ndarray, np.ndarray, int]:
  """(<int64>[U, 4] gender/age/occupation/region, <int64>[U] scenario, non-digit zip count)."""
  region = np.array([int(z[0]) if z[:1].isascii() and z[:1].isdigit() else NON_DIGIT_REGION
                     for z in raw.zip_codes], np.int64)
  age = np.searchsorted(np.asarray(AGES), raw.age)
  feats = np.stack([raw.gender, age, raw.occupation, region], axis=1).astype(np.int64)
  scenario = np.asarray(config.scenario_of_region, np.int64)[region]
  return feats, scenario, int((region == NON_DIGIT_REGION).sum())


# ----------------------------------------------------------------------------- events


@dataclasses.dataclass
class _Events:
  """All ratings sorted by (user, time, item); <int64>[R] arrays, bool masks."""

  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray
  t: np.ndarray
  domain: np.ndarray
  label: np.ndarray     # 1 positive, 0 negative, -1 unlabelled (dropped rating)
  cold: np.ndarray      # bool: the movie is held out (cold start)
  test: np.ndarray      # bool: in the user's test period (t >= T_u)
  valid: np.ndarray     # bool: in the user's validation period (V_u <= t < T_u)


def _events(raw: RawMovieLens, item_of_row: np.ndarray, domain_of_item: np.ndarray,
            config: ConvertConfig) -> _Events:
  item = item_of_row[raw.rating_movie]
  order = np.lexsort((item, raw.timestamp, raw.rating_user))
  rating = raw.rating[order]
  label = np.where(rating >= config.positive_min, 1,
                   np.where(rating <= config.negative_max, 0, -1)).astype(np.int64)
  n = len(order)
  return _Events(user=raw.rating_user[order], item=item[order], rating=rating,
                 t=raw.timestamp[order], domain=domain_of_item[item[order]], label=label,
                 cold=np.zeros(n, bool), test=np.zeros(n, bool), valid=np.zeros(n, bool))


def _choose_cold(ev: _Events, num_items: int, config: ConvertConfig) -> np.ndarray:
  """<bool>[num_items + 1]: a seeded `cold_share` of the target movies with labelled events."""
  candidates = np.unique(ev.item[(ev.domain == schema.TARGET) & (ev.label >= 0)])
  n = int(np.floor(config.cold_share * len(candidates) + 0.5))
  rng = np.random.default_rng([config.seed, 0xC01D])
  cold = np.zeros(num_items + 1, bool)
  cold[np.sort(rng.choice(candidates, n, replace=False))] = True
  return cold


_NEVER = np.iinfo(np.int64).max


def _share_cut(ev: _Events, mask: np.ndarray, num_users: int, share: float) -> np.ndarray:
  """<int64>[U] per user the time of the first of the last `share` (rounded half up) of the
  events in `mask` (in time order), int64 max when that rounds to none. Every event at or
  after the cut time is on the later side, so equal timestamps never straddle the cut."""
  rows = np.nonzero(mask)[0]  # Events are sorted by (user, time, item).
  if not len(rows):
    return np.full(num_users, _NEVER, np.int64)
  counts = np.bincount(ev.user[rows], minlength=num_users)
  n_late = np.floor(share * counts + 0.5).astype(np.int64)
  first = np.minimum(np.cumsum(counts) - n_late, len(rows) - 1)
  return np.where(n_late > 0, ev.t[rows][first], _NEVER)


def _day_cut(ev: _Events, mask: np.ndarray, num_users: int) -> np.ndarray:
  """<int64>[U] per user 00:00 UTC of the day of the newest event in `mask`, int64 max for a
  user without one."""
  rows = np.nonzero(mask)[0]  # Events are sorted by (user, time, item).
  if not len(rows):
    return np.full(num_users, _NEVER, np.int64)
  counts = np.bincount(ev.user[rows], minlength=num_users)
  last = ev.t[rows][np.maximum(np.cumsum(counts) - 1, 0)]
  return np.where(counts > 0, last // DAY_S * DAY_S, _NEVER)


def _cut_times(ev: _Events, num_users: int, config: ConvertConfig) -> np.ndarray:
  """<int64>[U] T_u: a user's test period starts at T_u (int64 max: no test events)."""
  labelled = (ev.domain == schema.TARGET) & (ev.label >= 0) & ~ev.cold
  if config.split == "last_day":
    return _day_cut(ev, labelled, num_users)
  if config.split == "last_positive_day":
    return _day_cut(ev, labelled & (ev.label == 1), num_users)
  return _share_cut(ev, labelled, num_users, config.test_share)


def _valid_cut_times(ev: _Events, num_users: int, config: ConvertConfig) -> np.ndarray:
  """<int64>[U] V_u: the validation period [V_u, T_u) holds the last `valid_share` of the
  user's labelled warm target events of the training period (t < T_u), or, with
  split="last_positive_day", starts at 00:00 UTC of the day of the user's newest positive warm
  target event before T_u; needs `ev.test`."""
  labelled = (ev.domain == schema.TARGET) & (ev.label >= 0) & ~ev.cold & ~ev.test
  if config.split == "last_positive_day":
    return _day_cut(ev, labelled & (ev.label == 1), num_users)
  return _share_cut(ev, labelled, num_users, config.valid_share)


# ----------------------------------------------------------------------------- sequences


@dataclasses.dataclass
class _Seq:
  """Positives on warm movies (one domain or both), in event order: <int64>[P] arrays."""

  key: np.ndarray       # user * span + t, non-decreasing
  item: np.ndarray
  t: np.ndarray
  rating: np.ndarray
  domain: np.ndarray
  prev_same: np.ndarray  # index of the user's previous position with the same category, -1

  @classmethod
  def of(cls, ev: _Events, mask: np.ndarray, span: int, category: np.ndarray) -> "_Seq":
    rows = np.nonzero(mask)[0]
    user, cat = ev.user[rows], category[ev.item[rows]]
    order = np.lexsort((np.arange(len(rows)), cat, user))
    prev = np.full(len(rows), -1, np.int64)
    same = (user[order][1:] == user[order][:-1]) & (cat[order][1:] == cat[order][:-1])
    prev[order[1:][same]] = order[:-1][same]
    return cls(key=user * span + ev.t[rows], item=ev.item[rows], t=ev.t[rows],
               rating=ev.rating[rows], domain=ev.domain[rows], prev_same=prev)

  def windows(self, user: np.ndarray, t: np.ndarray, span: int,
              max_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """[lo, hi) of the last <= max_len positives of each user strictly before t."""
    hi = np.searchsorted(self.key, user * span + t, "left")
    start = np.searchsorted(self.key, user * span, "left")
    return np.maximum(start, hi - max_len), hi

  def distinct_categories(self, lo: np.ndarray, hi: np.ndarray, max_len: int) -> np.ndarray:
    """<int64>[n] number of distinct categories in each window (vectorised in chunks)."""
    out = np.zeros(len(lo), np.int64)
    if not len(self.key):
      return out
    for c in range(0, len(lo), 20_000):
      l, h = lo[c:c + 20_000, None], hi[c:c + 20_000, None]
      pos = l + np.arange(max_len)[None]
      first = self.prev_same[np.minimum(pos, len(self.key) - 1)] < l
      out[c:c + 20_000] = (first & (pos < h)).sum(axis=1)
    return out


@dataclasses.dataclass
class _Plan:
  """The records of one kind/split: event rows plus windows [lo, hi) per sequence.

  A window indexes `seqs[name]` (ranking, matching) or `parts[name]` (ccl_pair: the event
  rows of the session's positives of that domain).
  """

  rows: np.ndarray
  windows: Dict[str, Tuple[np.ndarray, np.ndarray]]
  parts: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Prepared:
  """Everything needed to emit the records (`records`) and the statistics
  (`stats.statistics`)."""

  config: ConvertConfig
  info: DatasetInfo
  store: ItemStore
  names: Dict[str, list]
  user_features: np.ndarray   # <int64>[U, 4]
  scenario: np.ndarray        # <int64>[U]
  events: _Events
  seqs: Dict[str, _Seq]       # "source", "target", "mixed"
  plans: Dict[Tuple[str, str], _Plan]
  dual: np.ndarray            # <int64>[P, 2] (target item, source item): dual_pair/train
  skipped: Dict[str, int]
  non_digit_zips: int
  dual_splits: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # split -> pairs
  cold_user: np.ndarray = dataclasses.field(  # <int64>[U] 1 = cold user (`_cold_users`)
      default_factory=lambda: np.zeros(0, np.int64))


def _plan(ev: _Events, seqs: Dict[str, _Seq], names: Sequence[str], mask: np.ndarray,
          span: int, max_len: int) -> Tuple[_Plan, int]:
  """The events in `mask` whose windows in `names` are not all empty, and how many are not."""
  rows = np.nonzero(mask)[0]
  w = {n: seqs[n].windows(ev.user[rows], ev.t[rows], span, max_len) for n in names}
  keep = np.any([hi > lo for lo, hi in w.values()], axis=0)
  return _Plan(rows[keep], {n: (lo[keep], hi[keep]) for n, (lo, hi) in w.items()}), \
      int((~keep).sum())


def _ccl_plan(ev: _Events, train_pos: np.ndarray, gap: int, max_len: int) -> _Plan:
  """One record per session with warm train-period positives in both domains."""
  new = np.ones(len(ev.t), bool)
  new[1:] = (ev.user[1:] != ev.user[:-1]) | (np.diff(ev.t) > gap)
  session = np.cumsum(new) - 1
  parts = {name: np.nonzero(train_pos & (ev.domain == d))[0]
           for name, d in (("source", schema.SOURCE), ("target", schema.TARGET))}
  both = np.intersect1d(session[parts["source"]], session[parts["target"]])
  windows = {}
  for name, rows in parts.items():
    lo = np.searchsorted(session[rows], both, "left")
    hi = np.searchsorted(session[rows], both, "right")
    windows[name] = (np.maximum(lo, hi - max_len), hi)
  return _Plan(parts["source"][windows["source"][0]], windows, parts)


def _dual_pairs(ev: _Events, train_pos: np.ndarray, store: ItemStore, num_users: int,
                exclude: np.ndarray = np.zeros(0, np.int64)) -> Tuple[np.ndarray, int]:
  """(<int64>[P, 2] target -> most co-liked source item, warm targets without one).

  Co-likes count only the positives in `train_pos` (one period's); target ids in `exclude`
  (already paired in an earlier split) are left out."""
  src_ids = store.item_ids(schema.SOURCE)
  tgt_ids = np.setdiff1d(store.item_ids(schema.TARGET, cold=False), exclude)
  if not len(src_ids) or not len(tgt_ids):
    return np.zeros([0, 2], np.int64), len(tgt_ids)
  col = np.full(len(store.domain), -1, np.int64)
  col[src_ids], col[tgt_ids] = np.arange(len(src_ids)), np.arange(len(tgt_ids))
  mats = []
  for ids, d in ((src_ids, schema.SOURCE), (tgt_ids, schema.TARGET)):
    m = np.zeros([num_users, len(ids)], np.float32)
    rows = train_pos & (ev.domain == d) & (col[ev.item] >= 0)  # Not an excluded target.
    m[ev.user[rows], col[ev.item[rows]]] = 1.0
    mats.append(m)
  co = mats[1].T @ mats[0]  # [targets, sources]: users who liked both.
  best = np.argmax(co, axis=1)  # First maximum = lowest source item id.
  has = co[np.arange(len(tgt_ids)), best] > 0
  pairs = np.stack([tgt_ids[has], src_ids[best[has]]], axis=1)
  return pairs.astype(np.int64), int((~has).sum())


def prepare(raw: RawMovieLens, config: ConvertConfig = ConvertConfig()) -> Prepared:
  """Assigns ids, labels, the split and cold items, and plans every record (no files)."""
  domain_of_row = _domains(raw, config)
  row_of_item = np.lexsort((np.arange(raw.num_movies), domain_of_row))
  item_of_row = np.empty(raw.num_movies, np.int64)
  item_of_row[row_of_item] = np.arange(1, raw.num_movies + 1)
  domain_of_item = np.concatenate([[0], domain_of_row[row_of_item]])
  ev = _events(raw, item_of_row, domain_of_item, config)
  cold_item = _choose_cold(ev, raw.num_movies, config)
  ev.cold = cold_item[ev.item]
  ev.test = ev.t >= _cut_times(ev, raw.num_users, config)[ev.user]
  ev.valid = (ev.t >= _valid_cut_times(ev, raw.num_users, config)[ev.user]) & ~ev.test
  train = ~ev.test & ~ev.valid  # The training period: t < V_u (t < T_u without valid events).
  store, names = _item_store(raw, row_of_item, domain_of_row[row_of_item], cold_item[1:],
                             config)
  feats, scenario, non_digit = _users(raw, config)
  span = int(ev.t.max()) + 1 if len(ev.t) else 1
  pos = (ev.label == 1) & ~ev.cold
  seqs = {"source": _Seq.of(ev, pos & (ev.domain == schema.SOURCE), span, store.category),
          "target": _Seq.of(ev, pos & (ev.domain == schema.TARGET), span, store.category),
          "mixed": _Seq.of(ev, pos, span, store.category)}
  target = ev.domain == schema.TARGET
  labelled = (ev.label >= 0) & target
  cold_rank = labelled & ev.cold & (ev.test if config.cold_events == "test_period" else True)
  plans, skipped = {}, {}
  for split, mask in (("train", labelled & ~ev.cold & train),
                      ("valid", labelled & ~ev.cold & ev.valid),
                      ("test", labelled & ~ev.cold & ev.test), ("test_cold", cold_rank)):
    plans["ranking", split], n = _plan(ev, seqs, ("source", "target"), mask, span,
                                       config.max_history)
    skipped[f"ranking/{split}: no earlier positive in either domain"] = n
  for split, mask in (("train", pos & target & train), ("valid", pos & target & ev.valid),
                      ("test", pos & target & ev.test)):
    plans["matching", split], n = _plan(ev, seqs, ("mixed",), mask, span,
                                        config.max_match_history)
    skipped[f"matching/{split}: no earlier positive"] = n
  # Pairs are training data: training-period positives only (no valid or test event).
  plans["ccl_pair", "train"] = _ccl_plan(ev, pos & train, config.session_gap_s,
                                         config.max_history)
  # dual_pair: train from training-period co-likes; valid / test from co-likes of the
  # validation / test periods alone, for warm target movies not paired in an earlier split.
  dual_splits, paired = {}, np.zeros(0, np.int64)
  for split, period in (("train", train), ("valid", ev.valid), ("test", ev.test)):
    dual_splits[split], n = _dual_pairs(ev, pos & period, store, raw.num_users, paired)
    paired = np.union1d(paired, dual_splits[split][:, 0])
    skipped[f"dual_pair/{split}: warm target movie "
            + ("" if split == "train" else "not paired in an earlier split ")
            + "without a co-liked source movie"] = n
  info = _dataset_info(raw, config, store, names)
  return Prepared(config=config, info=info, store=store, names=names, user_features=feats,
                  scenario=scenario, events=ev, seqs=seqs, plans=plans,
                  dual=dual_splits["train"], skipped=skipped, non_digit_zips=non_digit,
                  dual_splits=dual_splits, cold_user=_cold_users(ev, raw.num_users))


def _cold_users(ev: _Events, num_users: int) -> np.ndarray:
  """<int64>[U] 1 = a cold user: no positive (rating >= positive_min) target-domain event on a
  warm movie before the user's test cut T_u (i.e. in the training or validation period; a user
  without test events: none at all). So every train and valid ranking record of a cold user
  has an empty target history, and a cold user has no train or valid matching record."""
  warm_pos = (ev.label == 1) & ~ev.cold & (ev.domain == schema.TARGET) & ~ev.test
  return (np.bincount(ev.user[warm_pos], minlength=num_users) == 0).astype(np.int64)


def _dataset_info(raw: RawMovieLens, config: ConvertConfig, store: ItemStore,
                  names: Dict[str, list]) -> DatasetInfo:
  cfg = dataclasses.asdict(config)
  if config.item_kind == "decade":
    del cfg["item_kind"]  # Recorded only when set: the views converted before it read the same.
  extra = {"converter": "tfrec.datasets.movielens", "config": cfg, "seed": config.seed,
           "splits": {k: list(v) for k, v in SPLITS.items()},
           "raw": {"format": raw.fmt, "path": os.path.abspath(raw.path)},
           "source_genres": [g for g in GENRES if g not in config.target_genres],
           "target_genres": list(config.target_genres),
           "scenario_names": list(SCENARIO_NAMES[:config.num_scenarios]),
           "user_features": list(schema.USER_FEATURE_NAMES), "vocab_file": "vocab.json"}
  return DatasetInfo(name="movielens/ml-1m", num_users=raw.num_users,
                     num_items=store.num_items, num_scenarios=config.num_scenarios,
                     num_categories=len(GENRES), num_tags=len(names["tags"]),
                     num_tokens=len(names["tokens"]), user_feature_sizes=USER_FEATURE_SIZES,
                     visual_dim=0, extra=extra,
                     max_seq_len=max(schema.MAX_SEQ_LEN, config.max_history),
                     num_item_kinds=len(names["item_kinds"]) - 1 if store.num_items else 0)


# ----------------------------------------------------------------------------- records


def _user_fields(p: Prepared, u: int) -> Dict:
  return {"user_id": u, "user_features": p.user_features[u], "scenario_id": p.scenario[u],
          "cold_user": p.cold_user[u]}


def num_records(p: Prepared, kind: str, split: str) -> int:
  """Number of records `records(p, kind, split)` yields."""
  return len(p.dual_splits[split]) if kind == "dual_pair" else len(p.plans[kind, split].rows)


def records(p: Prepared, kind: str, split: str) -> Iterator[Dict]:
  """Yields the record dicts of one kind/split (in user, time order), ready for the writer."""
  ev = p.events
  if kind == "dual_pair":
    for tgt, src in p.dual_splits[split]:
      yield {"target_item_id": tgt, "source_item_id": src}
    return
  plan = p.plans[kind, split]
  if kind == "ccl_pair":
    for j, r in enumerate(plan.rows):
      rec = {"user_id": ev.user[r]}
      for name in ("source", "target"):
        rows = plan.parts[name][plan.windows[name][0][j]:plan.windows[name][1][j]]
        rec[f"{name}_item_ids"], rec[f"{name}_timestamps"] = ev.item[rows], ev.t[rows]
      yield rec
    return
  for j, r in enumerate(plan.rows):
    rec = _user_fields(p, ev.user[r])
    rec["timestamp"] = ev.t[r]
    if kind == "ranking":
      rec.update(item_id=ev.item[r], label=ev.label[r])
      for name in ("source", "target"):
        lo, hi = plan.windows[name][0][j], plan.windows[name][1][j]
        rec[f"{name}_item_ids"] = p.seqs[name].item[lo:hi]
        rec[f"{name}_timestamps"] = p.seqs[name].t[lo:hi]
    else:
      m, lo, hi = p.seqs["mixed"], plan.windows["mixed"][0][j], plan.windows["mixed"][1][j]
      rec.update(seq_item_ids=m.item[lo:hi], seq_domain_ids=m.domain[lo:hi],
                 seq_timestamps=m.t[lo:hi], positive_item_id=ev.item[r],
                 seq_subsidiary=np.stack([np.ones(hi - lo), m.rating[lo:hi]], 1))
    yield rec


# ----------------------------------------------------------------------------- writing


def write(p: Prepared, out_dir: str, num_shards: int = 4) -> None:
  """Writes every shard set, the item store, vocab.json and dataset.json (staged, atomic)."""
  with _convert.staged(out_dir, p.store, p.info) as stage:
    with open(os.path.join(stage, "vocab.json"), "w") as f:
      json.dump(p.names, f, ensure_ascii=False, indent=0)
    for kind, splits in SPLITS.items():
      for split in splits:
        with ShardedWriter(stage, kind, split, num_shards, info=p.info) as w:
          for rec in records(p, kind, split):
            key = rec["target_item_id"] if kind == "dual_pair" else rec["user_id"]
            w.write(rec, shard=int(key) % num_shards)
