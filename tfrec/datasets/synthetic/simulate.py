"""The synthetic world's per-user simulation (sessions, impressions, pairs) into records, and
the parallel sharded writer (`generate`). The planted model is described in
`tfrec.datasets.synthetic`."""

from __future__ import annotations

import bisect
import contextlib
import multiprocessing
import os
import shutil
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

import tfrec  # noqa: F401  (selects Keras 2 before anything imports TensorFlow)
from tfrec.data import schema
from tfrec.data.info import DatasetInfo
from tfrec.datasets.synthetic.world import (CONFIGS, DAY_S, USER_FEATURE_SIZES, Session,
                                              SyntheticConfig, UserProfile, World, build_world,
                                              click_probability, draw, dual_pair_records,
                                              get_config, make_user, plan_sessions)
from tfrec.data.tfrecord_io import Manifest, Shard, ShardedWriter, shard_name

__all__ = ["SyntheticConfig", "CONFIGS", "get_config", "World", "build_world", "user_records",
           "dual_pair_records", "click_probability", "dataset_info", "default_num_shards",
           "generate", "SPLITS", "split_of_day"]

SPLITS: Dict[str, Tuple[str, ...]] = {
    "ranking": ("train", "valid", "test", "test_cold"),
    "ccl_pair": ("train",),
    "dual_pair": ("train",),
    "matching": ("train", "valid", "test"),
}
_SRC, _TGT, _IMP, _COLD = 0, 1, 2, 3         # event kinds inside a session.
_USER_KINDS = ("ranking", "ccl_pair", "matching")
Records = Dict[str, Dict[str, List[dict]]]


class _Event(NamedTuple):
  t: int
  kind: int       # _SRC, _TGT, _IMP or _COLD
  item: int
  prob: float     # click probability (impressions)
  label: int      # 1 for behaviours; the drawn label for impressions
  sub: Tuple[float, float]  # watch count, playback hours


class _History:
  """A user's behaviours so far (oldest first), per domain and mixed; appended in time order."""

  def __init__(self):
    self.items: Tuple[List[int], List[int]] = ([], [])
    self.ts: Tuple[List[int], List[int]] = ([], [])
    self.m_items: List[int] = []
    self.m_domains: List[int] = []
    self.m_ts: List[int] = []
    self.m_sub: List[float] = []

  def add(self, domain: int, item: int, t: int, sub: Tuple[float, float]) -> None:
    self.items[domain].append(item)
    self.ts[domain].append(t)
    self.m_items.append(item)
    self.m_domains.append(domain)
    self.m_ts.append(t)
    self.m_sub.extend(sub)

  def last(self, domain: int, t: int, max_len: int = schema.MAX_SEQ_LEN):
    """The last <= max_len (items, timestamps) of `domain` strictly before `t`."""
    n = bisect.bisect_left(self.ts[domain], t)
    lo = max(0, n - max_len)
    return self.items[domain][lo:n], self.ts[domain][lo:n]

  def mixed(self, t: int, max_len: int = schema.MAX_MATCH_SEQ_LEN) -> Dict[str, list]:
    """The last <= max_len mixed-domain behaviours strictly before `t` as matching fields."""
    n = bisect.bisect_left(self.m_ts, t)
    lo = max(0, n - max_len)
    return {"seq_item_ids": self.m_items[lo:n], "seq_domain_ids": self.m_domains[lo:n],
            "seq_timestamps": self.m_ts[lo:n], "seq_subsidiary": self.m_sub[2 * lo:2 * n]}


# ----------------------------------------------------------------------------- user model


def _topic_items(world: World, rng: np.random.Generator, interest: np.ndarray, intent: int,
                 domain: int, n: int) -> np.ndarray:
  """<int64>[n] behaviour items: topic = intent w.p. intent_weight else ~ interest."""
  from_intent = rng.random(n) < world.config.intent_weight
  topics = np.where(from_intent, intent, draw(rng, interest, n))
  return np.array([world.warm[domain][k].sample(rng, 1)[0] for k in topics], np.int64)


def _subsidiary(world: World, rng: np.random.Generator, user: UserProfile, items: np.ndarray,
                domain: int, intent: int) -> np.ndarray:
  """<float64>[n, 2] per behaviour: [watch count >= 1 (integer), playback hours >= 0]."""
  n = len(items)
  if domain == schema.SOURCE:
    return np.stack([1.0 + rng.poisson(0.2, n), rng.exponential(0.03, n)], axis=1)
  topic = world.topic[items]
  count = 1.0 + rng.poisson(1.0 + 3.0 * user.interest[domain][topic])
  scale = 0.04 + 0.04 * (topic == intent)
  return np.stack([count, count * rng.gamma(2.0, scale)], axis=1)


def _candidates(world: World, rng: np.random.Generator, intent: int, n: int,
                cold: bool) -> np.ndarray:
  """<int64>[n] impression candidates: intent-topic / popular / uniform (cold: cold only)."""
  cfg = world.config
  u = rng.random(n)
  if cold:
    return np.where(u < cfg.candidate_intent_share, world.cold[intent].sample(rng, n),
                    world.cold_all.uniform(rng, n))
  pool = world.warm_all[schema.TARGET]
  popular_cut = cfg.candidate_intent_share + cfg.candidate_popular_share
  return np.where(u < cfg.candidate_intent_share,
                  world.warm[schema.TARGET][intent].sample(rng, n),
                  np.where(u < popular_cut, pool.sample(rng, n), pool.uniform(rng, n)))


def _behaviours(world: World, rng: np.random.Generator, user: UserProfile, sess: Session,
                domain: int, n: int) -> List[_Event]:
  items = _topic_items(world, rng, user.interest[domain], sess.intent, domain, n)
  ts = sess.start + rng.integers(0, sess.duration, n)
  sub = _subsidiary(world, rng, user, items, domain, sess.intent)
  return [_Event(int(t), domain, int(i), 1.0, 1, (float(a), float(b)))
          for t, i, (a, b) in zip(ts, items, sub)]


def _impressions(world: World, rng: np.random.Generator, user: UserProfile, sess: Session,
                 n: int, cold: bool) -> List[_Event]:
  items = _candidates(world, rng, sess.intent, n, cold)
  ts = sess.start + rng.integers(0, sess.duration, n)
  probs = click_probability(world, user.interest[schema.TARGET], items, sess.intent,
                            sess.scenario)
  labels = (rng.random(n) < probs).astype(np.int64)
  sub = _subsidiary(world, rng, user, items, schema.TARGET, sess.intent)
  kind = _COLD if cold else _IMP
  return [_Event(int(t), kind, int(i), float(p), int(y), (float(a), float(b)))
          for t, i, p, y, (a, b) in zip(ts, items, probs, labels, sub)]


def _session_events(world: World, rng: np.random.Generator, user: UserProfile,
                    sess: Session) -> List[_Event]:
  """All behaviours and impressions of one session, ordered by time (stable)."""
  cfg = world.config
  rate_t = (cfg.active_target_events_per_session if user.active
            else cfg.target_events_per_session)
  events = _behaviours(world, rng, user, sess, schema.SOURCE,
                       rng.poisson(cfg.source_events_per_session))
  events += _behaviours(world, rng, user, sess, schema.TARGET, rng.poisson(rate_t))
  events += _impressions(world, rng, user, sess, rng.poisson(cfg.impressions_per_session),
                         cold=False)
  if split_of_day(cfg, sess.start) == "test" and len(world.cold_all):
    events += _impressions(world, rng, user, sess,
                           rng.poisson(cfg.cold_impressions_per_session), cold=True)
  return sorted(events, key=lambda e: e.t)


def split_of_day(cfg: SyntheticConfig, t: int) -> str:
  """The split of an event at time `t` (seconds) by its day: the last day "test", the day
  before "valid", the days before that "train". A session lies inside one hour, so inside one
  day: the split of its start is the split of all its events."""
  day = t // DAY_S
  if day >= cfg.days - 1:
    return "test"
  return "valid" if day == cfg.days - 2 else "train"


# ----------------------------------------------------------------------------- records


def _ranking_record(user: UserProfile, sess: Session, ev: _Event,
                    hist: _History) -> Optional[dict]:
  """A ranking example, or None when the user has no history at all before the impression."""
  src_items, src_ts = hist.last(schema.SOURCE, ev.t)
  tgt_items, tgt_ts = hist.last(schema.TARGET, ev.t)
  if not src_items and not tgt_items:
    return None
  return {"user_id": user.user_id, "user_features": user.features, "scenario_id": sess.scenario,
          "item_id": ev.item, "timestamp": ev.t, "label": ev.label,
          "source_item_ids": src_items, "source_timestamps": src_ts,
          "target_item_ids": tgt_items, "target_timestamps": tgt_ts, "oracle_prob": ev.prob}


def _matching_record(user: UserProfile, sess: Session, ev: _Event,
                     hist: _History) -> Optional[dict]:
  """The mixed behaviours before a target positive and that positive; None without history."""
  seq = hist.mixed(ev.t)
  if not seq["seq_item_ids"]:
    return None
  return {"user_id": user.user_id, "user_features": user.features, "scenario_id": sess.scenario,
          "timestamp": ev.t, "positive_item_id": ev.item, **seq}


def _ccl_record(user: UserProfile, src: Sequence[_Event], tgt: Sequence[_Event]) -> dict:
  src, tgt = src[-schema.MAX_SEQ_LEN:], tgt[-schema.MAX_SEQ_LEN:]
  return {"user_id": user.user_id,
          "source_item_ids": [e.item for e in src], "source_timestamps": [e.t for e in src],
          "target_item_ids": [e.item for e in tgt], "target_timestamps": [e.t for e in tgt]}


def _empty_records() -> Records:
  return {kind: {split: [] for split in SPLITS[kind]} for kind in _USER_KINDS}


def _play_session(world: World, user: UserProfile, sess: Session, events: Sequence[_Event],
                  hist: _History, out: Records) -> None:
  """Walks a session in time order: emits records from the history, then updates it."""
  split = split_of_day(world.config, sess.start)
  src, tgt = [], []
  for ev in events:
    if ev.kind == _COLD:
      rec = _ranking_record(user, sess, ev, hist)
      if rec is not None:
        out["ranking"]["test_cold"].append(rec)
      continue
    if ev.kind == _IMP:
      rec = _ranking_record(user, sess, ev, hist)
      if rec is not None:
        out["ranking"][split].append(rec)
      if not ev.label:
        continue
    if ev.kind != _SRC:  # an organic target behaviour or a click.
      rec = _matching_record(user, sess, ev, hist)
      if rec is not None:
        out["matching"][split].append(rec)
    domain = schema.SOURCE if ev.kind == _SRC else schema.TARGET
    hist.add(domain, ev.item, ev.t, ev.sub)
    (src if domain == schema.SOURCE else tgt).append(ev)
  if split == "train" and src and tgt:
    out["ccl_pair"]["train"].append(_ccl_record(user, src, tgt))


def user_records(world: World, user_id: int) -> Records:
  """Simulates one user from its own RNG, independent of every other user.

  Args:
    world: from `build_world`.
    user_id: in [0, config.num_users).

  Returns:
    kind -> split -> list of record dicts for "ranking" (train/valid/test/test_cold),
    "ccl_pair" (train) and "matching" (train/valid/test); dual pairs come from
    `dual_pair_records(world)`. Splits by the day of the session (`split_of_day`).
  """
  rng = np.random.default_rng([world.config.seed, user_id])
  user = make_user(world, rng, user_id)
  hist, out = _History(), _empty_records()
  for sess in plan_sessions(world, rng, user):
    _play_session(world, user, sess, _session_events(world, rng, user, sess), hist, out)
  return out


# ----------------------------------------------------------------------------- writing


def dataset_info(config: SyntheticConfig) -> DatasetInfo:
  """The `DatasetInfo` (vocabulary sizes and provenance) of a synthetic dataset."""
  extra = {"generator": "tfrec.datasets.synthetic", "config": config.to_dict(),
           "seed": config.seed, "splits": {k: list(v) for k, v in SPLITS.items()}}
  return DatasetInfo(
      name=f"synthetic/{config.name}", num_users=config.num_users,
      num_items=config.num_source_items + config.num_target_items,
      num_scenarios=config.num_scenarios, num_categories=config.num_categories,
      num_tags=config.num_tags, num_tokens=config.num_tokens,
      user_feature_sizes=USER_FEATURE_SIZES, visual_dim=config.visual_dim, extra=extra)


def default_num_shards(num_users: int) -> int:
  """One shard per 2,500 users, between 1 and 64."""
  return max(1, min(64, num_users // 2_500))


class _Stats:
  """Streaming record counts, positive rates and a binned oracle AUC per ranking split."""

  BINS = 4096

  def __init__(self):
    self.counts: Dict[Tuple[str, str], int] = {}
    self.hist: Dict[str, np.ndarray] = {}  # split -> [2, BINS] negatives, positives.
    self.mean_prob: Dict[str, float] = {}

  def add(self, kind: str, split: str, recs: List[dict]) -> None:
    self.counts[kind, split] = self.counts.get((kind, split), 0) + len(recs)
    if kind != "ranking" or not recs:
      return
    probs = np.array([r["oracle_prob"] for r in recs])
    labels = np.array([r["label"] for r in recs])
    bins = np.minimum((probs * self.BINS).astype(np.int64), self.BINS - 1)
    h = self.hist.setdefault(split, np.zeros((2, self.BINS), np.int64))
    np.add.at(h, (labels, bins), 1)
    self.mean_prob[split] = self.mean_prob.get(split, 0.0) + probs.sum()

  def merge(self, other: "_Stats") -> None:
    for key, n in other.counts.items():
      self.counts[key] = self.counts.get(key, 0) + n
    for split, h in other.hist.items():
      self.hist[split] = self.hist.get(split, 0) + h
      self.mean_prob[split] = self.mean_prob.get(split, 0.0) + other.mean_prob[split]

  def auc(self, split: str) -> float:
    neg, pos = self.hist[split]
    if not neg.sum() or not pos.sum():
      return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * below).sum() + 0.5 * (pos * neg).sum()) / (pos.sum() * neg.sum())

  def summary(self, info: DatasetInfo, seconds: float) -> str:
    total = sum(self.counts.values())
    days = info.extra["config"]["days"]
    lines = [f"{info.name} seed={info.extra['seed']}: {info.num_users} users, "
             f"{info.num_items} items, {total} records in {seconds:.1f} s "
             f"({total / max(seconds, 1e-9):,.0f} records/s)",
             f"  splits by day: train = days 0-{days - 3}, valid = day {days - 2}, "
             f"test and test_cold = day {days - 1}"]
    order = {(k, s): (k, i) for k, splits in SPLITS.items() for i, s in enumerate(splits)}
    for (kind, split), n in sorted(self.counts.items(), key=lambda kv: order[kv[0]]):
      line = f"  {kind + '/' + split:<20s} {n:>10d}"
      if kind == "ranking" and split in self.hist:
        pos = self.hist[split][1].sum()
        line += (f"  positive rate {pos / max(n, 1):.3f}  mean oracle_prob "
                 f"{self.mean_prob[split] / max(n, 1):.3f}  oracle AUC {self.auc(split):.3f}")
      lines.append(line)
    return "\n".join(lines)


def _write_user_shard(world: World, info: DatasetInfo, tmp_dir: str, shard: int,
                      num_shards: int) -> _Stats:
  """Writes the users with `user_id % num_shards == shard` as one-shard sets under tmp_dir."""
  stats = _Stats()
  directory = os.path.join(tmp_dir, str(shard))
  with contextlib.ExitStack() as stack:
    writers = {
        (kind, split): stack.enter_context(ShardedWriter(directory, kind, split, 1, info))
        for kind in _USER_KINDS for split in SPLITS[kind]}
    for user_id in range(shard, world.config.num_users, num_shards):
      for kind, by_split in user_records(world, user_id).items():
        for split, recs in by_split.items():
          for rec in recs:
            writers[kind, split].write(rec, shard=0)
          stats.add(kind, split, recs)
  return stats


_WORKER_WORLD: Dict[str, World] = {}


def _init_worker(config: SyntheticConfig) -> None:
  _WORKER_WORLD["world"] = build_world(config, with_visual=False)


def _worker_task(args: Tuple[DatasetInfo, str, int, int]) -> _Stats:
  return _write_user_shard(_WORKER_WORLD["world"], *args)


def _user_shards(world: World, info: DatasetInfo, tmp_dir: str, num_shards: int,
                 workers: int) -> Iterator[_Stats]:
  """Writes every user shard, in this process or in `workers` spawned processes."""
  if workers <= 1 or num_shards == 1:
    for shard in range(num_shards):
      yield _write_user_shard(world, info, tmp_dir, shard, num_shards)
    return
  ctx = multiprocessing.get_context("spawn")  # No fork after TensorFlow was imported.
  tasks = [(info, tmp_dir, shard, num_shards) for shard in range(num_shards)]
  with ctx.Pool(min(workers, num_shards), _init_worker, (world.config,)) as pool:
    yield from pool.imap(_worker_task, tasks)


def _assemble(out_dir: str, tmp_dir: str, num_shards: int) -> None:
  """Moves the one-shard sets to their final shard names and writes each kind/split manifest."""
  for kind in _USER_KINDS:
    os.makedirs(os.path.join(out_dir, kind), exist_ok=True)
    for split in SPLITS[kind]:
      shards = []
      for k in range(num_shards):
        part = Manifest.load(os.path.join(tmp_dir, str(k)), kind, split).shards[0]
        name = shard_name(split, k, num_shards)
        os.replace(os.path.join(tmp_dir, str(k), kind, part.file),
                   os.path.join(out_dir, kind, name))
        shards.append(Shard(name, part.records, part.bytes, part.sha256))
      Manifest(kind, split, shards).save(out_dir)


def generate(config: SyntheticConfig, out_dir: str, num_shards: Optional[int] = None,
             verbose: bool = True, workers: int = 1) -> DatasetInfo:
  """Writes a complete synthetic dataset directory, streaming one user at a time.

  Writes dataset.json, items.npz (+ manifest) and per kind/split shards
  (`shard = user_id % num_shards`; dual pairs: target item id % num_shards), each record
  checked against the schema and the info's vocabularies by `ShardedWriter`. The output is
  byte-identical for a config whatever `workers` is.

  Args:
    config: the parameters (e.g. `get_config("tiny", seed=3)`).
    out_dir: output directory (created).
    num_shards: shards per kind and split; default `default_num_shards(num_users)`.
    verbose: print a summary (records per kind/split, positive rate, oracle AUC).
    workers: processes that write user shards in parallel (1: in this process).

  Returns:
    the dataset's `DatasetInfo`.
  """
  begin = time.perf_counter()
  world = build_world(config)
  info = dataset_info(config)
  world.store.validate(info=info)
  info.save(out_dir)
  world.store.save(out_dir)
  shards = num_shards or default_num_shards(config.num_users)
  stats = _Stats()
  pairs = dual_pair_records(world)
  with ShardedWriter(out_dir, "dual_pair", "train", shards, info=info) as writer:
    for rec in pairs:
      writer.write(rec, shard=rec["target_item_id"] % shards)
  stats.add("dual_pair", "train", pairs)
  tmp_dir = os.path.join(out_dir, ".synthetic-tmp")
  shutil.rmtree(tmp_dir, ignore_errors=True)
  try:
    for part in _user_shards(world, info, tmp_dir, shards, workers):
      stats.merge(part)
    _assemble(out_dir, tmp_dir, shards)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  if verbose:
    print(stats.summary(info, time.perf_counter() - begin), flush=True)
  return info
