"""COUPLE's cross-domain cold-start protocol (Cao et al., COUPLE §4.1.2) over an event table, and
the `matching` records it gives. Shared by MovieLens' `--view=couple`
(`tfrec.datasets.movielens.couple`) and the Amazon converter (`tfrec.datasets.amazon`).

The paper: positives (clicks; review ratings > 3) "are temporally sorted with timestamps of a
user's action. For testing, we use leave-one-out strategy and make the last-position items from
target domain as the ground-truth, while erasing these items from the training pool to make sure
they are totally cold-start contents. [...] we randomly select half of the testing users, and
erase all the items of the target domain (if any) from their historical sequences to make them
cold-start users."

`protocol(user, item, domain, time, num_users, config)` is that rule as a pure numpy function
over the POSITIVE events (the caller applies its positive threshold), in the order given:

  1. Order: per user by time, equal times in table order (a stable sort). "Before" below means
     earlier in this order (so an equal-time event listed earlier is part of the history).
  2. Test: each user's LAST target-domain positive. Its items are the cold items T (the item
     store marks them `cold`): every event on a T item other than the test positive itself is
     erased from every record, as positive and in histories, of every split.
  3. Valid (`config.valid`, on by default): each user's last target positive before the test
     one that is not on a T item, i.e. the second-to-last once T is erased. Its items V are
     also erased from the training pool and from validation histories, so that validation
     measures unseen items as the test does; they are NOT flagged `cold` (the validator refuses
     cold items in a valid split, and the cold candidate pool of `test_cold` stays T) and test
     histories keep them (test records erase only T, as the paper's). `valid=False` gives the
     paper's split exactly: no valid split, only T erased.
  4. Cold users: the test users are the users whose test positive has a non-empty history once
     T is erased (the others are dropped and counted). floor(`cold_user_share` x their number)
     of them (half by default, a seeded choice, `numpy.random.default_rng([seed, 0xC01D])`) are
     cold users: every target-domain item is erased from their histories (test and valid
     records, `cold_user` = 1), and they contribute NO training record (every training record
     predicts a target positive, and a cold user's target activity is what the protocol hides:
     training on it would show the model the user's target taste). A cold user's valid record
     is kept that way too (its history = the source positives before it), so validation has
     cold users as the test does. A cold user left with an empty history is dropped from that
     split and counted (stats).
  5. Train: every target positive of a warm user that is neither held out nor on a T or V
     item, predicted from the user's positives before it (both domains, T and V items erased).
     Source positives only ever appear in histories.
  Histories keep their newest `config.max_len` events; a record whose history is empty after
  erasing is dropped and counted in `ColdStartSplit.dropped` (never silently).

Splits (`SPLITS`): matching/train, matching/valid, matching/test_cold (the synthetic world's
name for the cold pool: `evaluation.sampled.negative_pool` draws a split named *cold* from the
cold target items). seen_items/{valid,test_cold}.npz (`tfrec.data.seen_items`): per user every
positive before the split's positive, both domains, erased ones included (the user did interact
with them; COUPLE samples negatives "from the pool where users have no historical interactions
with"). There is no seen_items/train.npz: train holds several records per user and the file keys
by user.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tfrec.data import schema, seen_items
from tfrec.data.tfrecord_io import ShardedWriter

SPLITS = ("train", "valid", "test_cold")
COLD_SPLIT = "test_cold"
# COUPLE Table 3 (#train, #test, #cold-start users).
PAPER_TABLE3 = {"Amazon": (5_797_557, 95_884, 67_063), "TPMV": (5_333_879, 62_230, 34_934)}


@dataclasses.dataclass(frozen=True)
class ColdStartConfig:
  """The choices of the protocol (module docstring).

  Attributes:
    max_len: newest history events kept per record (dataset.json's max_seq_len when above 50;
      matching accepts max(100, max_seq_len)).
    valid: write a valid split (step 3); False: the paper's split exactly.
    cold_user_share: share of the test users made cold, rounded down (the paper: half).
    seed: of the cold-user choice (and of the cold candidates).
    cold_item_share: None: the paper's rule (every user's last target positive is held out,
      whatever its item). A share p: two disjoint seeded sets of p of the target items (of
      those with a positive) are the test and the valid CANDIDATES; a user's test positive is
      the last target positive on a test candidate, the valid one the last on a valid
      candidate before it, so only candidates are ever erased, and the user's events after the
      test positive are left out of every record (nothing after the test point is trained on).
      For dense data (MovieLens: every popular movie is somebody's last positive, and erasing
      the paper's way removed 93% of the target positives) this keeps the training pool;
      users without a positive on a test candidate have no test record (counted).
  """

  max_len: int = schema.MAX_MATCH_SEQ_LEN
  valid: bool = True
  cold_user_share: float = 0.5
  seed: int = 0
  cold_item_share: Optional[float] = None

  def __post_init__(self):
    if self.max_len < 1:
      raise ValueError(f"max_len must be >= 1, not {self.max_len}")
    if self.cold_item_share is not None and not 0 < self.cold_item_share <= 0.5:
      raise ValueError(f"cold_item_share must be in (0, 0.5] (test and valid candidates are "
                       f"disjoint), not {self.cold_item_share}")
    if not 0 <= self.cold_user_share <= 1:
      raise ValueError(f"cold_user_share must be in [0, 1], not {self.cold_user_share}")

  @property
  def max_seq_len(self) -> int:
    """dataset.json's max_seq_len that lets matching sequences hold `max_len` events."""
    return max(schema.MAX_SEQ_LEN, self.max_len)


@dataclasses.dataclass
class SplitPlan:
  """The records of one split.

  Attributes:
    pos: <int64>[r] position (in the sorted event order) of each record's positive.
    cold_user: <int64>[r] 1 = the record's user is a cold user.
    lo, hi: <int64>[r] the history is `visible[cold_user][lo:hi]` (positions, oldest first).
    visible: (warm, cold) <int64> positions of the events a warm / cold user's history may hold.
  """

  pos: np.ndarray
  cold_user: np.ndarray
  lo: np.ndarray
  hi: np.ndarray
  visible: Tuple[np.ndarray, np.ndarray]

  def __len__(self) -> int:
    return len(self.pos)

  def history(self, j: int) -> np.ndarray:
    """<int64>[L] positions of record j's history, oldest first."""
    return self.visible[int(self.cold_user[j])][self.lo[j]:self.hi[j]]


@dataclasses.dataclass
class ColdStartSplit:
  """What `protocol` decided. Event arrays are in the sorted order (per user, time, table row).

  Attributes:
    config: the choices.
    num_users: user ids are in [0, num_users).
    order: <int64>[n] the input table row of each sorted event.
    user, item, domain, time: <int64>[n] the sorted events.
    starts: <int64>[num_users + 1] user u's events are positions starts[u]:starts[u + 1].
    cold_items: <int64> sorted T (the test positives' items; `cold` in the item store).
    valid_items: <int64> sorted V (the valid positives' items; erased from training).
    test_users: <int64> sorted users the cold half is drawn from (step 4).
    cold_users: <int64> sorted cold users.
    plans: split -> `SplitPlan` (records in user, time order).
    dropped: reason -> records left out (every reason listed, zero or not).
    erased: what erasing removed from the training pool (target positives).
    candidates: (test, valid) sorted candidate items under `cold_item_share`; None under the
      paper's rule (every target item).
  """

  config: ColdStartConfig
  num_users: int
  order: np.ndarray
  user: np.ndarray
  item: np.ndarray
  domain: np.ndarray
  time: np.ndarray
  starts: np.ndarray
  cold_items: np.ndarray
  valid_items: np.ndarray
  test_users: np.ndarray
  cold_users: np.ndarray
  plans: Dict[str, SplitPlan]
  dropped: Dict[str, int]
  erased: Dict[str, int]
  candidates: Optional[Tuple[np.ndarray, np.ndarray]] = None

  @property
  def cold_user(self) -> np.ndarray:
    """<int64>[num_users] 1 = cold user."""
    flag = np.zeros(self.num_users, np.int64)
    flag[self.cold_users] = 1
    return flag

  def rows(self, split: str) -> np.ndarray:
    """<int64>[r] the INPUT table rows of the split's positives, in record order."""
    return self.order[self.plans[split].pos]

  def seen(self, split: str) -> Iterator[Tuple[int, np.ndarray]]:
    """(user, <int64>[k] every positive item before the record's positive, oldest first) per
    record of a split with one record per user (valid, test_cold)."""
    for p in self.plans[split].pos:
      u = int(self.user[p])
      yield u, self.item[self.starts[u]:p]


def _last_per_user(positions: np.ndarray, user: np.ndarray) -> np.ndarray:
  """The last of `positions` (ascending, grouped by user) of each user."""
  if not len(positions):
    return positions
  u = user[positions]
  return positions[np.r_[u[1:] != u[:-1], True]]


def _windows(visible: np.ndarray, pos: np.ndarray, first: np.ndarray,
             max_len: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(lo, hi, full length) into `visible` of the visible events in [first, pos) per record."""
  hi = np.searchsorted(visible, pos, "left")
  start = np.searchsorted(visible, first, "left")
  return np.maximum(start, hi - max_len), hi, hi - start


def _flags(ids: np.ndarray, size: int) -> np.ndarray:
  out = np.zeros(size, bool)
  out[ids] = True
  return out


def protocol(user: np.ndarray, item: np.ndarray, domain: np.ndarray, time: np.ndarray,
             num_users: int, config: ColdStartConfig = ColdStartConfig()) -> ColdStartSplit:
  """COUPLE §4.1's cold-start split of a table of positive events (module docstring).

  Args:
    user: <int>[n] user ids in [0, num_users).
    item: <int>[n] item ids >= 1.
    domain: <int>[n] 0 source / 1 target.
    time: <int>[n] timestamps >= 0; equal times keep the table order.
    num_users: size of the user id space.
    config: the choices.

  Returns:
    the `ColdStartSplit`.

  Raises:
    ValueError: arrays of different lengths or values out of range (naming the first row).
  """
  arrays = [np.asarray(a, np.int64).reshape(-1) for a in (user, item, domain, time)]
  user, item, domain, time = arrays
  n = len(user)
  if any(len(a) != n for a in arrays):
    raise ValueError(f"event arrays differ in length: {[len(a) for a in arrays]}")
  for name, values, bad in (
      ("user", user, (user < 0) | (user >= num_users)), ("item", item, item < 1),
      ("domain", domain, (domain != schema.SOURCE) & (domain != schema.TARGET)),
      ("time", time, time < 0)):
    if bad.any():
      i = int(np.argmax(bad))
      raise ValueError(f"event row {i}: {name} {int(values[i])} out of range")
  order = np.lexsort((np.arange(n), time, user))
  u, it, d, t = user[order], item[order], domain[order], time[order]
  starts = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=num_users))]).astype(np.int64)
  first = starts[u]  # per event: its user's first position
  size = int(it.max(initial=0)) + 1
  target = d == schema.TARGET

  # The test and valid candidates (every target item under the paper's rule).
  in_c, in_cv = np.ones(n, bool), np.ones(n, bool)
  dropped: Dict[str, int] = {}
  candidates = None
  if config.cold_item_share is not None:
    items = np.unique(it[target])
    m = int(round(config.cold_item_share * len(items)))
    perm = np.random.default_rng([config.seed, 0xC01D, 1]).permutation(len(items))
    candidates = (np.sort(items[perm[:m]]), np.sort(items[perm[m:2 * m]]))
    in_c = _flags(items[perm[:m]], size)[it]
    in_cv = _flags(items[perm[m:2 * m]], size)[it]
    dropped["test_cold: no target positive on a test candidate item (no test record)"] = int(
        len(np.unique(u[target])) - len(np.unique(u[target & in_c])))
  test_pos = _last_per_user(np.flatnonzero(target & in_c), u)
  cold_items = np.unique(it[test_pos])
  in_t = _flags(cold_items, size)[it]
  # A user's events after the test positive are in no record (none under the paper's rule for
  # the target domain; with candidates, later target positives would train on the future).
  test_at = np.full(num_users, n, np.int64)
  test_at[u[test_pos]] = test_pos
  later = np.arange(n) > test_at[u]
  if config.valid:
    valid_pos = _last_per_user(np.flatnonzero(target & ~in_t & in_cv & ~later), u)
  else:
    valid_pos = np.zeros(0, np.int64)
  valid_items = np.unique(it[valid_pos])
  in_v = _flags(valid_items, size)[it]
  warm_test_vis = np.flatnonzero(~in_t)
  pool_vis = np.flatnonzero(~in_t & ~in_v & ~later)  # training pool, warm valid histories
  source_vis = np.flatnonzero(~target)       # cold users' histories

  # Test users: a non-empty history once T is erased; then the seeded cold half.
  _, _, full = _windows(warm_test_vis, test_pos, first[test_pos], config.max_len)
  dropped["test_cold: no positive before the held-out item once the cold items are erased"] = \
      int((full == 0).sum())
  held = np.zeros(n, bool)
  held[test_pos] = held[valid_pos] = True  # the held-out positives, kept or dropped
  test_pos = test_pos[full > 0]
  test_users = u[test_pos]
  k = int(np.floor(config.cold_user_share * len(test_users)))
  rng = np.random.default_rng([config.seed, 0xC01D])
  cold_users = np.sort(test_users[rng.choice(len(test_users), k, replace=False)])
  cold_flag = _flags(cold_users, num_users).astype(np.int64)

  warm_reason = "warm user, no positive before it once the cold and valid items are erased"
  cold_reason = "cold user, no source-domain positive before it (target items erased)"

  def plan(name: str, pos: np.ndarray, warm_vis: np.ndarray,
           reasons: Sequence[Optional[str]]) -> SplitPlan:
    cold = cold_flag[u[pos]]
    lo, hi = np.zeros(len(pos), np.int64), np.zeros(len(pos), np.int64)
    keep = np.zeros(len(pos), bool)
    for flag, vis in ((0, warm_vis), (1, source_vis)):
      sel = cold == flag
      lo[sel], hi[sel], full = _windows(vis, pos[sel], first[pos[sel]], config.max_len)
      keep[sel] = full > 0
      if reasons[flag] is not None:
        dropped[f"{name}: {reasons[flag]}"] = int((sel & ~keep).sum())
    return SplitPlan(pos=pos[keep], cold_user=cold[keep], lo=lo[keep], hi=hi[keep],
                     visible=(warm_vis, source_vis))

  # Cold users have no train record; every warm test user kept a history (filtered above).
  train_pos = np.flatnonzero(target & ~in_t & ~in_v & ~later & (cold_flag[u] == 0))
  plans = {"train": plan("train", train_pos, pool_vis, (warm_reason, None)),
           "valid": plan("valid", valid_pos, pool_vis, (warm_reason, cold_reason)),
           COLD_SPLIT: plan(COLD_SPLIT, test_pos, warm_test_vis, (None, cold_reason))}
  others = target & ~held
  erased = {"target positives on cold (test) items, other than the held-out ones":
            int((others & in_t).sum()),
            "target positives on valid items, other than the held-out ones":
            int((others & in_v).sum()),
            "target positives of cold users (withheld from train)":
            int((others & ~in_t & ~in_v & ~later & (cold_flag[u] == 1)).sum()),
            "target positives after the user's test positive (in no record)":
            int((others & ~in_t & ~in_v & later).sum())}
  return ColdStartSplit(config=config, num_users=num_users, order=order, user=u, item=it,
                        domain=d, time=t, starts=starts, cold_items=cold_items,
                        valid_items=valid_items, test_users=np.sort(test_users),
                        cold_users=cold_users, plans=plans, dropped=dropped, erased=erased,
                        candidates=candidates)


# ----------------------------------------------------------------------------- records


def splits(config: ColdStartConfig) -> Tuple[str, ...]:
  """The splits written: `SPLITS`, without valid when `config.valid` is False."""
  return SPLITS if config.valid else tuple(x for x in SPLITS if x != "valid")


def records(s: ColdStartSplit, split: str, user_features: np.ndarray,
            scenario: np.ndarray) -> Iterator[Dict]:
  """Yields the `matching` record dicts of one split, in user then time order.

  Args:
    s: from `protocol`.
    split: one of `SPLITS`.
    user_features: <int64>[num_users, NUM_USER_FEATURES].
    scenario: <int64>[num_users] scenario id per user.
  """
  plan = s.plans[split]
  for j, p in enumerate(plan.pos):
    h = plan.history(j)
    user = int(s.user[p])
    yield {"user_id": user, "user_features": user_features[user],
           "scenario_id": scenario[user], "cold_user": plan.cold_user[j],
           "timestamp": s.time[p], "seq_item_ids": s.item[h], "seq_domain_ids": s.domain[h],
           "seq_timestamps": s.time[h],
           "seq_subsidiary": np.zeros([len(h), schema.NUM_SUBSIDIARY], np.float32),
           "positive_item_id": s.item[p]}


def write(s: ColdStartSplit, stage: str, info, user_features: np.ndarray, scenario: np.ndarray,
          num_shards: int) -> None:
  """Writes matching/<split> for every split (shard = user id % num_shards) and
  seen_items/{valid,test_cold}.npz into `stage` (a `_convert.staged` directory)."""
  for split in splits(s.config):
    with ShardedWriter(stage, "matching", split, num_shards, info=info) as w:
      for rec in records(s, split, user_features, scenario):
        w.write(rec, shard=rec["user_id"] % num_shards)
    if split != "train":
      seen_items.write(stage, split, s.seen(split))


# ----------------------------------------------------------------------------- statistics


def rule(s: ColdStartSplit) -> str:
  """One line for dataset.json and stats.md."""
  c = s.config
  return ("COUPLE §4.1: positives per user by time (ties in table order); test_cold = each "
          "user's last target positive, its items cold and erased everywhere else; "
          + ("valid = the last target positive before it not on a cold item, its items erased "
             "from train and valid histories (not flagged cold); " if c.valid else "no valid; ")
          + f"{c.cold_user_share:g} of the test users (rounded down, seed {c.seed}) cold: "
          "target items erased from their histories, no train record; histories cut to the "
          f"newest {c.max_len}")


def counts(s: ColdStartSplit) -> Dict[str, object]:
  """Figures for dataset.json's extra and stats.md."""
  test = s.plans[COLD_SPLIT]
  no_target = sum(int(not np.any(s.domain[test.history(j)] == schema.TARGET))
                  for j in range(len(test)))
  return {"events": int(len(s.user)), "records": {k: len(v) for k, v in s.plans.items()},
          "cold_items": int(len(s.cold_items)), "valid_items": int(len(s.valid_items)),
          "test_users": int(len(s.test_users)), "cold_users": int(len(s.cold_users)),
          "test_records_of_cold_users": int(test.cold_user.sum()),
          "test_records_without_target_history": no_target,
          "dropped": dict(s.dropped), "erased": dict(s.erased)}


def statistics_lines(s: ColdStartSplit, paper_row: Optional[str] = None) -> List[str]:
  """Markdown: records per split beside COUPLE Table 3, then what was dropped and erased."""
  c = counts(s)
  rec = c["records"]
  lines = ["| | #Train | #Valid | #Test | #Cold-start user (cold_user = 1) | "
           "#Test without a target item in the history |", "|---|---:|---:|---:|---:|---:|",
           f"| this dataset | {rec['train']:,} | {rec['valid']:,} | {rec[COLD_SPLIT]:,} | "
           f"{c['test_records_of_cold_users']:,} | {c['test_records_without_target_history']:,} |"]
  for name, (tr, te, cu) in PAPER_TABLE3.items():
    mark = " (this dataset's row)" if name == paper_row else ""
    lines.append(f"| COUPLE Table 3, {name}{mark} | {tr:,} | - | {te:,} | {cu:,} | - |")
  lines += ["", "The paper's cold-start users are "
            f"{PAPER_TABLE3['Amazon'][2] / PAPER_TABLE3['Amazon'][1]:.0%} (Amazon) and "
            f"{PAPER_TABLE3['TPMV'][2] / PAPER_TABLE3['TPMV'][1]:.0%} (TPMV) of its test users, "
            "more than the half it draws: they may also count test users with no earlier "
            "target positive (the last column).", "",
            f"Cold items (test positives' items, flagged cold): {c['cold_items']:,}; valid items "
            f"(erased from training, not flagged): {c['valid_items']:,}. Test users: "
            f"{c['test_users']:,}, of which cold: {c['cold_users']:,}.", "",
            "Records dropped (history empty after erasing):"]
  lines += [f"- {k}: {v:,}" for k, v in c["dropped"].items()]
  lines += ["", "Target positives erased from the training pool:"]
  lines += [f"- {k}: {v:,}" for k, v in c["erased"].items()]
  return lines


__all__ = ["COLD_SPLIT", "PAPER_TABLE3", "SPLITS", "ColdStartConfig", "ColdStartSplit",
           "SplitPlan", "counts", "protocol", "records", "rule", "splits", "statistics_lines",
           "write"]
