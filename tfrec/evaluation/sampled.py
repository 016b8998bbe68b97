"""Sampled ranking, the second pass of `tfrec.evaluate` (whose docstring states the choices):
the negative pool of a split (`negative_pool`), what the train split says about items and users
(`train_stats`), each positive's candidates (`Negatives`), and the pass that scores them with
the user encoded once and accumulates HR@K/NDCG@K, the oracle and the checks (`sampled_pass`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from tfrec import metrics
from tfrec.data import schema
from tfrec.data.item_store import ItemStore
from tfrec.data.pipeline import Reader
from tfrec.datasets.synthetic.oracle import (TOLERANCE as ORACLE_TOLERANCE, OracleUnavailable,
                                         SyntheticOracle, checked_probabilities)
from tfrec.metrics.ranking import SampledProtocol

PROTOCOL_NAMES = tuple(metrics.PROTOCOLS) + ("none",)
POOLS = ("auto", "warm", "cold", "all")
_NOT_FEATURES = ("label", "_file", "_record")


# ----------------------------------------------------------------------------- inputs


def resolve_protocol(protocol: Union[str, SampledProtocol, None]) -> Optional[SampledProtocol]:
  """A protocol name ("semi", "adapt", "couple", "none"), a `SampledProtocol`, or None."""
  if protocol is None or isinstance(protocol, SampledProtocol):
    return protocol
  if protocol == "none":
    return None
  if protocol not in metrics.PROTOCOLS:
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOL_NAMES)}")
  return metrics.PROTOCOLS[protocol]


def negative_pool(store: ItemStore, split: str, which: str = "auto") -> Tuple[np.ndarray, str]:
  """The candidate pool of sampled negatives for `split`.

  Args:
    store: the dataset's item store.
    split: split name; "auto" picks the cold pool when the name contains "cold".
    which: "auto", "warm" (non-cold target items), "cold" (cold target items) or "all".

  Returns:
    (<int64>[p] item ids, a description recorded with the result).
  """
  if which not in POOLS:
    raise ValueError(f"negative pool must be one of {POOLS}, not {which!r}")
  if which == "auto":
    which = "cold" if "cold" in split else "warm"
  if which == "all":
    return store.item_ids(domain=schema.TARGET), "all target-domain items"
  cold = which == "cold"
  return (store.item_ids(domain=schema.TARGET, cold=cold),
          f"{'cold' if cold else 'non-cold'} target-domain items")


@dataclasses.dataclass(frozen=True)
class TrainStats:
  """What sampled ranking takes from the train split.

  Attributes:
    popularity: <float64>[num_items + 1] times each item is a positive (label 1).
    seen: user id -> <int64>[s] the distinct items the user has positives on.
    examples: records read.
  """

  popularity: np.ndarray
  seen: Dict[int, np.ndarray]
  examples: int


def _group_items(users: np.ndarray, items: np.ndarray) -> Dict[int, np.ndarray]:
  """user -> sorted distinct items, from aligned <int64>[n] arrays."""
  if not len(users):
    return {}
  pairs = np.unique(np.stack([users, items], axis=1), axis=0)
  bounds = np.r_[0, np.nonzero(np.diff(pairs[:, 0]))[0] + 1, len(pairs)]
  return {int(pairs[a, 0]): pairs[a:b, 1].astype(np.int64)
          for a, b in zip(bounds[:-1], bounds[1:])}


def train_stats(data: Union[Reader, tf.data.Dataset], num_items: int,
                batch_size: int = 4096) -> TrainStats:
  """Item popularity (positives per item) and each user's positive items over one split."""
  users, items, labels = [], [], []
  ds = data.dataset(batch_size) if isinstance(data, Reader) else data
  for _, _, batch in batches(ds):
    users.append(batch["user_id"].numpy())
    items.append(batch["item_id"].numpy())
    labels.append(batch["label"].numpy())
  users, items, labels = (np.concatenate(x).astype(np.int64) if x else np.zeros(0, np.int64)
                          for x in (users, items, labels))
  pos = labels == 1
  popularity = np.bincount(items[pos], minlength=num_items + 1).astype(np.float64)
  return TrainStats(popularity=popularity, seen=_group_items(users[pos], items[pos]),
                    examples=len(labels))


def check_pool_size(proto: SampledProtocol, pool: np.ndarray, description: str) -> None:
  """Fails before any reading when the pool cannot give any example its negatives."""
  if len(pool) < proto.num_negatives:
    raise ValueError(f"protocol {proto.name} needs {proto.num_negatives} negatives per "
                     f"positive, but the negative pool ({description}) holds {len(pool)} items;"
                     " choose another --protocol or --negative_pool")


# ----------------------------------------------------------------------------- batches


SAMPLING_RULE = (
    "users sampled at random: the split's distinct user ids in increasing order are permuted "
    "by numpy's default_rng(SeedSequence(eval seed, spawn_key=(1,))); whole users are taken in "
    "that order while their examples fit within max_examples, and the first user who does not "
    "fit ends the sample (a first user with more than max_examples examples gives its first "
    "max_examples in split order); the sampled users' examples are evaluated in split order")


def sample_users(user_ids: np.ndarray, max_examples: int, seed: int
                 ) -> Tuple[np.ndarray, Dict[str, Any]]:
  """Which examples of a split `--max_examples` evaluates: all examples of randomly sampled
  users, at most `max_examples` of them (`SAMPLING_RULE` states the rule exactly).

  The user, not the record, is sampled: the first records of a split (often the first users,
  or the earliest requests) are not favoured, and a sampled user's examples all count (GAUC
  and the bootstrap over users need whole users).

  Args:
    user_ids: <int>[n] the user of each example of the split, in split order.
    max_examples: the most examples to evaluate (0: every example).
    seed: the eval seed.

  Returns:
    (<bool>[n] the evaluated examples, a JSON-ready record: "rule", "seed", "max_examples",
    "users", "split_users", "split_examples").
  """
  user_ids = np.asarray(user_ids, np.int64)
  n = len(user_ids)
  users, inverse, per_user = np.unique(user_ids, return_inverse=True, return_counts=True)
  record: Dict[str, Any] = {"max_examples": int(max_examples), "split_users": int(len(users)),
                            "split_examples": int(n)}
  if not max_examples or max_examples >= n:
    record.update(rule="every example of the split", seed=None, users=int(len(users)))
    return np.ones(n, bool), record
  rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1,)))
  order = rng.permutation(len(users))
  fits = np.cumsum(per_user[order]) <= max_examples
  taken = order[:int(np.argmin(fits)) if not fits.all() else len(order)]
  if len(taken):
    selected = np.isin(inverse, taken)
  else:  # the first user alone has more than max_examples examples
    taken = order[:1]
    selected = inverse == taken[0]
    selected[np.flatnonzero(selected)[max_examples:]] = False
  record.update(rule=SAMPLING_RULE, seed=int(seed), users=int(len(taken)))
  return selected, record


def batches(ds: tf.data.Dataset, selected: Optional[np.ndarray] = None
            ) -> Iterator[Tuple[int, np.ndarray, Dict[str, tf.Tensor]]]:
  """(position of the batch's first kept example among the evaluated ones, the kept examples'
  rows in the split, the batch of the kept examples) for the examples `selected`
  (<bool>[split size] from `sample_users`; None: all)."""
  start = evaluated = 0
  for batch in ds:
    n = int(tf.shape(next(iter(batch.values())))[0])  # any record kind
    rows = np.arange(start, start + n)
    start += n
    if selected is not None:
      if start > len(selected):
        raise ValueError(f"the data gave more than the {len(selected)} examples it gave before: "
                         "evaluate needs a deterministic, unshuffled reader")
      keep = selected[rows]
      if not keep.any():
        continue
      if not keep.all():
        batch = {k: tf.boolean_mask(v, keep) for k, v in batch.items()}
        rows = rows[keep]
    yield evaluated, rows, batch
    evaluated += len(rows)


def model_features(batch: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  return {k: v for k, v in batch.items() if k not in _NOT_FEATURES}


def _where(paths: Optional[Sequence[str]], batch: Mapping[str, tf.Tensor], i: int,
           row: int) -> str:
  """Names an example: "file F, record R" with provenance, else its row in the split."""
  if paths is not None and "_file" in batch and "_record" in batch:
    return f"file {paths[int(batch['_file'][i])]}, record {int(batch['_record'][i])}"
  return f"example {row} of the split"


def has_oracle_prob(cols: Mapping[str, np.ndarray]) -> bool:
  return bool(np.all(cols["oracle_prob"] >= 0))


# ----------------------------------------------------------------------------- the pass


@dataclasses.dataclass(frozen=True)
class Negatives:
  """How the negatives of each positive are drawn, and the protocol record describing it."""

  proto: SampledProtocol
  pool: np.ndarray                       # <int64>[p]
  pool_popularity: Optional[np.ndarray]  # <float64>[p], the popularity of the pool's items
  seen: Mapping[int, np.ndarray]         # user -> items never its negatives (`seen_items`)
  split_positives: Mapping[int, np.ndarray]  # user -> its positives in the split
  exclude_split_positives: bool
  seed: int
  paths: Optional[Sequence[str]]
  pool_description: str
  seen_description: str
  popularity_description: str

  @classmethod
  def for_split(cls, proto: SampledProtocol, cols: Mapping[str, np.ndarray], pool: np.ndarray,
                popularity: Optional[np.ndarray], seen_items: Optional[Mapping[int, np.ndarray]],
                exclude_split_positives: bool, seed: int, paths: Optional[Sequence[str]],
                pool_description: str, seen_description: str,
                popularity_description: str) -> "Negatives":
    """From `evaluate`'s arguments (same names) and pass 1's columns (the split's positives)."""
    pool = np.asarray(pool, np.int64)
    pos = cols["labels"] == 1
    split_pos = (_group_items(cols["user_ids"][pos].astype(np.int64),
                             cols["item_ids"][pos].astype(np.int64))
                 if exclude_split_positives else {})
    return cls(proto=proto, pool=pool,
               pool_popularity=(None if popularity is None else
                                np.asarray(popularity, np.float64)[pool]),
               seen=seen_items or {}, split_positives=split_pos,
               exclude_split_positives=exclude_split_positives, seed=int(seed), paths=paths,
               pool_description=pool_description, seen_description=seen_description,
               popularity_description=popularity_description)

  def draw(self, batch: Mapping[str, tf.Tensor], idx: np.ndarray, rows: np.ndarray
           ) -> np.ndarray:
    """<int64>[n, 1 + m] candidates of the positives `idx` of `batch` (`rows` of the split,
    whether or not examples are sampled): the positive in column 0, then the negatives from
    `default_rng([seed, row])`."""
    item, uid = batch["item_id"].numpy(), batch["user_id"].numpy()
    hist, mask = batch["target_item_ids"].numpy(), batch["target_mask"].numpy()
    empty = np.zeros(0, np.int64)
    cand = np.empty((len(idx), 1 + self.proto.num_negatives), np.int64)
    for j, i in enumerate(idx):
      u = int(uid[i])
      seen = np.concatenate([hist[i][mask[i]], [item[i]], self.seen.get(u, empty),
                             self.split_positives.get(u, empty)])
      try:
        neg = metrics.sample_negatives(np.random.default_rng([self.seed, int(rows[j])]),
                                       self.pool, seen, self.proto, self.pool_popularity)
      except ValueError as e:
        raise ValueError(
            f"{_where(self.paths, batch, int(i), int(rows[j]))}: user {u}, positive item "
            f"{int(item[i])}: {e} (pool: {self.pool_description}, {len(self.pool)} items, "
            f"{len(np.unique(seen))} excluded for this user); choose another --protocol or "
            "--negative_pool") from None
      cand[j, 0] = item[i]
      cand[j, 1:] = neg
    return cand

  def describe(self) -> Dict[str, Any]:
    """The result's "protocol" entry."""
    p = self.proto
    if not p.exclude_seen:
      excluded = ["nothing (the protocol draws from the whole pool)"]
    else:
      excluded = ["the example's target history (as the model reads it)", "the positive"]
      if self.seen:
        excluded.append(self.seen_description)
      if self.exclude_split_positives:
        excluded.append("the user's positives in the evaluated split")
    return {
        "ranking": "sampled", "name": p.name, "description": p.describe(),
        "num_random": p.num_random, "num_popular": p.num_popular, "ks": list(p.ks),
        "exclude_seen": p.exclude_seen, "negative_pool": self.pool_description,
        "negative_pool_size": int(len(self.pool)), "excluded": ", ".join(excluded),
        "popularity": self.popularity_description if p.num_popular else "not used",
        "seed": self.seed, "ties": "a negative scored equal to the positive ranks above it",
    }


class RankingSums:
  """Running HR@K / NDCG@K over batches of <float>[n, 1 + m] candidate scores (positive in
  column 0), through `tfrec.metrics.hit_rate_at_k` / `ndcg_at_k` per batch."""

  def __init__(self, ks: Sequence[int]):
    self.ks = tuple(ks)
    self.n = 0
    self.sums = {f"{m}@{k}": 0.0 for k in self.ks for m in ("hr", "ndcg")}

  def add(self, scores: np.ndarray) -> None:
    n = len(scores)
    for k in self.ks:
      self.sums[f"hr@{k}"] += n * metrics.hit_rate_at_k(scores[:, 0], scores[:, 1:], k)
      self.sums[f"ndcg@{k}"] += n * metrics.ndcg_at_k(scores[:, 0], scores[:, 1:], k)
    self.n += n

  def metrics(self) -> Dict[str, float]:
    return {k: (v / self.n if self.n else math.nan) for k, v in self.sums.items()}


class Ranked:
  """What the sampled pass accumulates batch by batch: memory stays O(examples) however many
  candidates (the candidates themselves are kept only with `keep`)."""

  def __init__(self, ks: Sequence[int], oracle_note: str, keep: bool):
    self.model = RankingSums(ks)
    self.oracle = RankingSums(ks)
    self.oracle_note = oracle_note  # "" while the oracle reproduces the records
    self.fingerprint = hashlib.sha256()
    self.col0_diff = 0.0
    self.outside_pool = 0
    self.kept = ({k: [] for k in ("rows", "candidates", "scores", "oracle_scores")} if keep
                 else None)

  def add(self, rows: np.ndarray, candidates: np.ndarray, scores: np.ndarray,
          logits: np.ndarray, pool: np.ndarray, oracle_scores: Optional[np.ndarray]) -> None:
    self.model.add(scores)
    self.col0_diff = max(self.col0_diff, float(np.max(np.abs(scores[:, 0] - logits))))
    self.outside_pool += int(np.sum(~np.isin(candidates[:, 0], pool)))
    self.fingerprint.update(np.ascontiguousarray(candidates).tobytes())
    if self.kept is not None:
      for k, v in (("rows", rows), ("candidates", candidates), ("scores", scores),
                   ("oracle_scores", oracle_scores)):
        self.kept[k].append(v)

  def final_oracle_note(self) -> str:
    if not self.model.n:
      return "not available: no positive example to rank"
    return self.oracle_note or (
        "planted P(click) of every candidate (user interest and session intent re-simulated "
        "from the generator's seed; matches every ranked record's oracle_prob within "
        f"{ORACLE_TOLERANCE:g})")

  def arrays(self, width: int) -> Dict[str, Any]:
    """The kept "rows", "candidates", "scores" and "oracle_scores" (`evaluate`'s keep_arrays)."""
    kept = self.kept
    out: Dict[str, Any] = {"rows": (np.concatenate(kept["rows"]) if kept["rows"]
                                    else np.zeros(0, np.int64))}
    for k, dtype in (("candidates", np.int64), ("scores", np.float32)):
      out[k] = np.concatenate(kept[k]) if kept[k] else np.zeros((0, width), dtype)
    planted = self.final_oracle_note().startswith("planted")
    out["oracle_scores"] = (np.concatenate(kept["oracle_scores"])
                            if kept["oracle_scores"] and planted else None)
    return out


def _first_oracle_note(oracle: Optional[SyntheticOracle], reason: str,
                       cols: Mapping[str, np.ndarray]) -> str:
  """Why the ranking oracle cannot be used from the start ("" when it may be)."""
  if oracle is None:
    return f"not available: {reason}"
  if not has_oracle_prob(cols):
    return "not available: the records carry no oracle_prob to check the oracle against"
  return ""


def sampled_pass(ds: tf.data.Dataset, score: Callable, cols: Mapping[str, np.ndarray],
                 negatives: Negatives, oracle: Optional[SyntheticOracle], oracle_reason: str,
                 selected: Optional[np.ndarray], max_pairs_per_step: int, keep: bool
                 ) -> Ranked:
  """Pass 2 of `evaluate`: each positive against its sampled negatives, the user encoded once
  (SEMI App. A.3), in steps of at most `max_pairs_per_step` (user, candidate) pairs.

  Args:
    ds: the batches of pass 1, in the same order (checked).
    score: (features without item_id, <int64>[n, c] candidates) -> <float32>[n, c].
    cols: pass 1's per-example columns: labels, logits, user_ids, item_ids, timestamps,
      scenario_ids, oracle_prob.
    negatives: how each positive's negatives are drawn.
    selected: the evaluated examples of the split (`sample_users`; None: all).
    oracle: the ranking oracle, or None (`oracle_reason` says why).
    keep: keep every candidate and score (`Ranked.arrays`).
  """
  ranked = Ranked(negatives.proto.ks, _first_oracle_note(oracle, oracle_reason, cols), keep)
  rows_per_step = max(1, max_pairs_per_step // (1 + negatives.proto.num_negatives))
  for offset, split_rows, batch in batches(ds, selected):
    label = batch["label"].numpy()
    if not np.array_equal(batch["item_id"].numpy(),
                          cols["item_ids"][offset:offset + len(label)]):
      raise ValueError("the data gave a different order on the second pass: evaluate needs a "
                       "deterministic, unshuffled reader (runs.reader(..., training=False))")
    idx = np.nonzero(label == 1)[0]
    if not len(idx):
      continue
    rows = offset + idx  # among the evaluated examples
    cand = negatives.draw(batch, idx, split_rows[idx])
    feats = {k: tf.gather(v, idx) for k, v in model_features(batch).items() if k != "item_id"}
    sc = np.concatenate([score({k: v[s:s + rows_per_step] for k, v in feats.items()},
                               tf.constant(cand[s:s + rows_per_step])).numpy()
                         for s in range(0, len(idx), rows_per_step)])
    probs = None
    if not ranked.oracle_note:
      try:
        probs = checked_probabilities(oracle, cols["user_ids"][rows].astype(np.int64),
                                      cols["timestamps"][rows], cols["scenario_ids"][rows],
                                      cand, cols["oracle_prob"][rows])
        ranked.oracle.add(probs)
      except OracleUnavailable as e:
        ranked.oracle_note = f"not available: {e}"
    ranked.add(rows, cand, sc, cols["logits"][rows], negatives.pool, probs)
  return ranked


def add_sampled_result(result: Dict[str, Any], ranked: Ranked, negatives: Negatives) -> None:
  """Adds HR@K/NDCG@K of the model and the oracle, the protocol and the checks to `result`."""
  result["counts"]["ranked_positives"] = ranked.model.n
  result["metrics"].update(ranked.model.metrics())
  note = ranked.final_oracle_note()
  result["oracle"].update(ranked.oracle.metrics() if note.startswith("planted") else
                          RankingSums(negatives.proto.ks).metrics())
  result["oracle"]["ranking"] = note
  result["protocol"] = negatives.describe()
  result["checks"] = {"encode_once_max_abs_diff": ranked.col0_diff,
                      "negatives_sha256": ranked.fingerprint.hexdigest(),
                      "positives_outside_pool": ranked.outside_pool}
