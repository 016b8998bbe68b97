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
from tfrec.datasets.synthetic import items as item_lib
from tfrec.datasets.synthetic.users import (Session, UserProfile, behaviour_interest,
                                            candidate_pools, click_probability, interest_at,
                                            make_user,
                                            plan_sessions, session_rates, split_of_day,
                                            user_pools)
from tfrec.datasets.synthetic.world import (CONFIGS, DAY_S, USER_FEATURE_SIZES, WEEK_S, Pool,
                                            SyntheticConfig, World, build_world, draw,
                                            dual_pair_records, get_config)
from tfrec.data.tfrecord_io import Manifest, Shard, ShardedWriter, shard_name
from tfrec.datasets.synthetic.config import SPLITS
from tfrec.datasets.synthetic.stats import Stats

__all__ = ["SyntheticConfig", "CONFIGS", "get_config", "World", "build_world", "user_records",
           "dual_pair_records", "click_probability", "dataset_info", "default_num_shards",
           "generate", "SPLITS", "split_of_day", "candidate_pools", "users_records"]

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

  def last(self, domain: int, t: int, max_len: int):
    """The last <= max_len (items, timestamps) of `domain` strictly before `t`."""
    n = bisect.bisect_left(self.ts[domain], t)
    lo = max(0, n - max_len)
    return self.items[domain][lo:n], self.ts[domain][lo:n]

  def mixed(self, t: int, max_len: int) -> Dict[str, list]:
    """The last <= max_len mixed-domain behaviours strictly before `t` as matching fields."""
    n = bisect.bisect_left(self.m_ts, t)
    lo = max(0, n - max_len)
    return {"seq_item_ids": self.m_items[lo:n], "seq_domain_ids": self.m_domains[lo:n],
            "seq_timestamps": self.m_ts[lo:n], "seq_subsidiary": self.m_sub[2 * lo:2 * n]}


# ----------------------------------------------------------------------------- user model


def _topic_items(world: World, rng: np.random.Generator, interest: np.ndarray, intent: int,
                 domain: int, n: int, pools: Sequence[Pool]) -> np.ndarray:
  """<int64>[n] behaviour items: topic = intent w.p. intent_weight else ~ interest; the item
  from `pools[topic]` (one uniform per item, in order: the same draws as n calls of
  `Pool.sample(rng, 1)`)."""
  from_intent = rng.random(n) < world.config.intent_weight
  topics = np.where(from_intent, intent, draw(rng, interest, n))
  u = rng.random(n)
  out = np.empty(n, np.int64)
  for k in np.unique(topics):
    sel = topics == k
    pool = pools[k]
    idx = np.searchsorted(pool.cdf, u[sel] * pool.cdf[-1], side="right")
    out[sel] = pool.ids[np.minimum(idx, len(pool.ids) - 1)]
  return out


def _subsidiary(world: World, rng: np.random.Generator, user: UserProfile, items: np.ndarray,
                domain: int, sess: Session, intent: int) -> np.ndarray:
  """<float64>[n, 2] per behaviour: [watch count >= 1 (integer), playback hours >= 0] (the
  constants are the `sub_*` knobs; intent: the target one for target items)."""
  cfg, n = world.config, len(items)
  if domain == schema.SOURCE:
    return np.stack([1.0 + rng.poisson(cfg.sub_source_watch_rate, n),
                     rng.exponential(cfg.sub_source_playback_mean, n)], axis=1)
  topic = world.topic[items]
  theta = interest_at(world, user, domain, sess.day)
  count = 1.0 + rng.poisson(cfg.sub_target_watch_base
                            + cfg.sub_target_watch_interest * theta[topic])
  scale = cfg.sub_target_playback_scale + cfg.sub_target_playback_intent * (topic == intent)
  return np.stack([count, count * rng.gamma(2.0, scale)], axis=1)


def _candidates(world: World, rng: np.random.Generator, intent: int, n: int, cold: bool,
                scenario: int) -> np.ndarray:
  """<int64>[n] impression candidates: intent-topic / popular / uniform (cold: cold only;
  warm ones from the scenario's pool when scenario_pool_share < 1)."""
  cfg = world.config
  u = rng.random(n)
  by_topic, pool = candidate_pools(world, scenario, cold)
  if cold:
    return np.where(u < cfg.candidate_intent_share, by_topic[intent].sample(rng, n),
                    pool.uniform(rng, n))
  popular_cut = cfg.candidate_intent_share + cfg.candidate_popular_share
  return np.where(u < cfg.candidate_intent_share,
                  by_topic[intent].sample(rng, n),
                  np.where(u < popular_cut, pool.sample(rng, n), pool.uniform(rng, n)))


def _behaviours(world: World, rng: np.random.Generator, user: UserProfile, sess: Session,
                domain: int, n: int) -> List[_Event]:
  """Organic behaviours of `domain` (target ones: the target intent and the taste-tilted
  pools)."""
  intent = sess.intent if domain == schema.SOURCE else sess.target_intent
  pools = user_pools(world, user, domain, sess.scenario)
  items = _topic_items(world, rng, behaviour_interest(world, user, domain, sess), intent,
                       domain, n, pools)
  ts = sess.start + rng.integers(0, sess.duration, n)
  sub = _subsidiary(world, rng, user, items, domain, sess, intent)
  return [_Event(int(t), domain, int(i), 1.0, 1, (float(a), float(b)))
          for t, i, (a, b) in zip(ts, items, sub)]


def _impressions(world: World, rng: np.random.Generator, user: UserProfile, sess: Session,
                 n: int, cold: bool) -> List[_Event]:
  items = _candidates(world, rng, sess.target_intent, n, cold, sess.scenario)
  ts = sess.start + rng.integers(0, sess.duration, n)
  probs = click_probability(world, user, items, sess.target_intent, sess.scenario, sess.day)
  labels = (rng.random(n) < probs).astype(np.int64)
  sub = _subsidiary(world, rng, user, items, schema.TARGET, sess, sess.target_intent)
  kind = _COLD if cold else _IMP
  return [_Event(int(t), kind, int(i), float(p), int(y), (float(a), float(b)))
          for t, i, p, y, (a, b) in zip(ts, items, probs, labels, sub)]


def _session_events(world: World, rng: np.random.Generator, user: UserProfile,
                    sess: Session) -> List[_Event]:
  """All behaviours and impressions of one session, ordered by time (stable)."""
  cfg = world.config
  rate_t, rate_i, rate_c = session_rates(world, user, sess)
  # A cold user has no target activity (organic events, impressions) before the test day.
  silent = user.cold and split_of_day(cfg, sess.start) != "test"
  events = _behaviours(world, rng, user, sess, schema.SOURCE,
                       rng.poisson(cfg.source_events_per_session))
  events += _behaviours(world, rng, user, sess, schema.TARGET,
                        0 if silent else rng.poisson(rate_t))
  if not silent:
    events += _impressions(world, rng, user, sess, rng.poisson(rate_i), cold=False)
  if rate_c:
    events += _impressions(world, rng, user, sess, rng.poisson(rate_c), cold=True)
  return sorted(events, key=lambda e: e.t)


# ----------------------------------------------------------------------------- records


def _ranking_record(user: UserProfile, sess: Session, ev: _Event, hist: _History,
                    max_len: int) -> Optional[dict]:
  """A ranking example (each domain's last `max_len` behaviours), or None when the user has
  no history at all before the impression."""
  src_items, src_ts = hist.last(schema.SOURCE, ev.t, max_len)
  tgt_items, tgt_ts = hist.last(schema.TARGET, ev.t, max_len)
  if not src_items and not tgt_items:
    return None
  rec = {"user_id": user.user_id, "user_features": user.features, "scenario_id": sess.scenario,
         "item_id": ev.item, "timestamp": ev.t, "label": ev.label,
         "source_item_ids": src_items, "source_timestamps": src_ts,
         "target_item_ids": tgt_items, "target_timestamps": tgt_ts, "oracle_prob": ev.prob}
  if user.cold:  # Written for cold users only: the others keep the contract's default 0.
    rec["cold_user"] = 1
  return rec


def _matching_record(user: UserProfile, sess: Session, ev: _Event, hist: _History,
                     max_len: int) -> Optional[dict]:
  """The last `max_len` mixed behaviours before a target positive and that positive; None
  without history."""
  seq = hist.mixed(ev.t, max_len)
  if not seq["seq_item_ids"]:
    return None
  rec = {"user_id": user.user_id, "user_features": user.features, "scenario_id": sess.scenario,
         "timestamp": ev.t, "positive_item_id": ev.item, **seq}
  if user.cold:
    rec["cold_user"] = 1
  return rec


def _ccl_record(user: UserProfile, src: Sequence[_Event], tgt: Sequence[_Event],
                max_len: int, request: Optional[int] = None) -> dict:
  src, tgt = src[-max_len:], tgt[-max_len:]
  out = {"user_id": user.user_id,
         "source_item_ids": [e.item for e in src], "source_timestamps": [e.t for e in src],
         "target_item_ids": [e.item for e in tgt], "target_timestamps": [e.t for e in tgt]}
  if request is not None:  # the pair's time reference (CCL counts time blocks back from it)
    out["timestamp"] = int(request)
  return out


def _empty_records() -> Records:
  return {kind: {split: [] for split in SPLITS[kind]} for kind in _USER_KINDS}


def _pair_events(events: Sequence[_Event]) -> Tuple[List[_Event], List[_Event]]:
  """A session's behaviours that join the history: (source events, target events + clicks)."""
  src = [e for e in events if e.kind == _SRC]
  tgt = [e for e in events if e.kind == _TGT or (e.kind == _IMP and e.label)]
  return src, tgt


def _ccl_pairs(world: World, user: UserProfile,
               sessions: Sequence[Tuple[Session, List[_Event], List[_Event]]]) -> List[dict]:
  """ccl_pair records from the train sessions' (session, source events, target events), by
  `ccl_pair_scope`: one per session with both domains, or one per week of the train period
  (each domain's last 50 behaviours of the week, both non-empty). A week pair's `timestamp` is
  the end of its week (clipped at the end of the train period): as a ranking record's request
  time ends its 7-day sequences (SEMI §4.1), so CCL's time blocks count back from it. A session
  pair has none (CCL counts back from its latest event)."""
  n = world.config.max_seq_len
  if world.config.ccl_pair_scope == "session":
    return [_ccl_record(user, src, tgt, n) for _, src, tgt in sessions if src and tgt]
  weeks: Dict[int, Tuple[List[_Event], List[_Event]]] = {}
  for sess, src, tgt in sessions:
    s, t = weeks.setdefault(sess.start // WEEK_S, ([], []))
    s.extend(src)
    t.extend(tgt)
  train_end = (world.config.days - 2) * DAY_S  # the valid day's start
  return [_ccl_record(user, s, t, n, request=min((week + 1) * WEEK_S, train_end))
          for week, (s, t) in sorted(weeks.items()) if s and t]


def _play_session(world: World, user: UserProfile, sess: Session, events: Sequence[_Event],
                  hist: _History, out: Records) -> None:
  """Walks a session in time order: emits records from the history, then updates it."""
  split = split_of_day(world.config, sess.start)
  n, n_mixed = world.config.max_seq_len, max(schema.MAX_MATCH_SEQ_LEN, world.config.max_seq_len)
  for ev in events:
    if ev.kind == _COLD:  # A cold item: test_cold records; it never joins a history.
      rec = _ranking_record(user, sess, ev, hist, n)
      if rec is not None:
        out["ranking"]["test_cold"].append(rec)
      if ev.label:
        rec = _matching_record(user, sess, ev, hist, n_mixed)
        if rec is not None:
          out["matching"]["test_cold"].append(rec)
      continue
    if ev.kind == _IMP:
      rec = _ranking_record(user, sess, ev, hist, n)
      if rec is not None:
        out["ranking"][split].append(rec)
      if not ev.label:
        continue
    if ev.kind != _SRC:  # an organic target behaviour or a click.
      rec = _matching_record(user, sess, ev, hist, n_mixed)
      if rec is not None:
        out["matching"][split].append(rec)
    domain = schema.SOURCE if ev.kind == _SRC else schema.TARGET
    hist.add(domain, ev.item, ev.t, ev.sub)


def user_records(world: World, user_id: int) -> Records:
  """Simulates one user from its own RNG, independent of every other user.

  Args:
    world: from `build_world`.
    user_id: in [0, config.total_users); ids >= num_users are CCL-only users
      (`ccl_only_users`): only their ccl_pair records, by the lean path (`ccl_only_pairs`).

  Returns:
    kind -> split -> list of record dicts for "ranking" (train/valid/test/test_cold),
    "ccl_pair" (train) and "matching" (train/valid/test); dual pairs come from
    `dual_pair_records(world)`. Splits by the day of the session (`split_of_day`).
  """
  out = _empty_records()
  if user_id >= world.config.num_users:
    out["ccl_pair"]["train"] = ccl_only_pairs(world, user_id)
    return out
  rng = np.random.default_rng([world.config.seed, user_id])
  user = make_user(world, rng, user_id)
  hist, train = _History(), []
  for sess in plan_sessions(world, rng, user):
    events = _session_events(world, rng, user, sess)
    _play_session(world, user, sess, events, hist, out)
    if split_of_day(world.config, sess.start) == "train":
      train.append((sess, *_pair_events(events)))
  out["ccl_pair"]["train"] = _ccl_pairs(world, user, train)
  return out


def users_records(world: World, num_users: Optional[int] = None) -> Records:
  """kind -> split -> the records of the first `num_users` regular users (all by default), in
  memory (no files): `user_records` concatenated in user order."""
  out = _empty_records()
  for user_id in range(num_users or world.config.num_users):
    for kind, by_split in user_records(world, user_id).items():
      for split, recs in by_split.items():
        out[kind][split].extend(recs)
  return out


def ccl_only_pairs(world: World, user_id: int) -> List[dict]:
  """The ccl_pair records of user `user_id`, simulating only what a pair needs: the train
  sessions' events (no histories, no ranking or matching records, nothing after the train
  period). The same draws as `user_records` (train sessions come first and nothing else draws
  from the user's RNG), so for a regular user this equals its `user_records` ccl_pair list."""
  rng = np.random.default_rng([world.config.seed, user_id])
  user = make_user(world, rng, user_id)
  train = []
  for sess in plan_sessions(world, rng, user):
    if split_of_day(world.config, sess.start) != "train":
      break
    train.append((sess, *_pair_events(_session_events(world, rng, user, sess))))
  return _ccl_pairs(world, user, train)


# ----------------------------------------------------------------------------- writing


def dataset_info(config: SyntheticConfig) -> DatasetInfo:
  """The `DatasetInfo` (vocabulary sizes and provenance) of a synthetic dataset."""
  extra = {"generator": "tfrec.datasets.synthetic", "config": config.to_dict(),
           "seed": config.seed, "splits": {k: list(v) for k, v in SPLITS.items()}}
  return DatasetInfo(
      name=f"synthetic/{config.name}", num_users=config.total_users,
      num_items=config.num_source_items + config.num_target_items,
      num_scenarios=config.num_scenarios, num_categories=config.num_categories,
      num_tags=config.num_tags, num_tokens=config.num_tokens,
      user_feature_sizes=USER_FEATURE_SIZES, visual_dim=config.visual_dim, extra=extra,
      max_seq_len=config.max_seq_len, num_item_kinds=config.num_item_kinds)


def default_num_shards(num_users: int) -> int:
  """One shard per 2,500 users, between 1 and 64."""
  return max(1, min(64, num_users // 2_500))


def _write_user_shard(world: World, info: DatasetInfo, tmp_dir: str, shard: int,
                      num_shards: int) -> Stats:
  """Writes the users with `user_id % num_shards == shard` as one-shard sets under tmp_dir."""
  stats = Stats(world.store.category, world.config.num_scenarios)
  directory = os.path.join(tmp_dir, str(shard))
  with contextlib.ExitStack() as stack:
    writers = {
        (kind, split): stack.enter_context(ShardedWriter(directory, kind, split, 1, info))
        for kind in _USER_KINDS for split in SPLITS[kind]}
    for user_id in range(shard, world.config.total_users, num_shards):
      records = user_records(world, user_id)
      for kind, by_split in records.items():
        for split, recs in by_split.items():
          for rec in recs:
            writers[kind, split].write(rec, shard=0)
      stats.add_user(records, regular=user_id < world.config.num_users)
  return stats


_WORKER_WORLD: Dict[str, World] = {}


def _init_worker(config: SyntheticConfig) -> None:
  _WORKER_WORLD["world"] = build_world(config, with_visual=False)


def _worker_task(args: Tuple[DatasetInfo, str, int, int]) -> Stats:
  return _write_user_shard(_WORKER_WORLD["world"], *args)


def _user_shards(world: World, info: DatasetInfo, tmp_dir: str, num_shards: int,
                 workers: int) -> Iterator[Stats]:
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

  Writes dataset.json, items.npz (+ manifest), stats.md and per kind/split shards
  (`shard = user_id % num_shards`; dual pairs: target item id % num_shards), each record
  checked against the schema and the info's vocabularies by `ShardedWriter`. The output is
  byte-identical for a config whatever `workers` is.

  Args:
    config: the parameters (e.g. `get_config("tiny", seed=3)`).
    out_dir: output directory (created).
    num_shards: shards per kind and split; default `default_num_shards(num_users)`.
    verbose: print a summary (records per kind/split, positive rate, oracle AUC, the SEMI
      Table-4 figures of target histories); the same figures, without timings, are written
      to stats.md whatever `verbose` is.
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
  shards = num_shards or default_num_shards(config.total_users)
  stats = Stats(world.store.category, config.num_scenarios)
  stats.papers.set_world(world)
  by_split = item_lib.split_dual_pairs(config, dual_pair_records(world), world.num_items)
  for split, pairs in by_split.items():
    with ShardedWriter(out_dir, "dual_pair", split, shards, info=info) as writer:
      for rec in pairs:
        writer.write(rec, shard=rec["target_item_id"] % shards)
    stats.add("dual_pair", split, pairs)
  tmp_dir = os.path.join(out_dir, ".synthetic-tmp")
  shutil.rmtree(tmp_dir, ignore_errors=True)
  try:
    for part in _user_shards(world, info, tmp_dir, shards, workers):
      stats.merge(part)
    _assemble(out_dir, tmp_dir, shards)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  with open(os.path.join(out_dir, "stats.md.incomplete"), "w") as f:
    f.write(stats.markdown(info))
  os.replace(os.path.join(out_dir, "stats.md.incomplete"), os.path.join(out_dir, "stats.md"))
  if verbose:
    print(stats.summary(info, time.perf_counter() - begin), flush=True)
  return info
