"""Evaluation of retrieval models (`tfrec.models.retrieval.RetrievalModel`) on matching records:
each example's positive item ranked against

  full     the whole candidate pool (`sampled.negative_pool`: by default the non-cold
           target-domain items, the cold ones for a split named *cold*), every item of the
           user's behaviour sequence excluded except the positive itself;
  <name>   a sampled protocol of `tfrec.metrics.PROTOCOLS` (COUPLE: 50 random + 50 by training
           popularity; SASRec: 100 random), negatives drawn per example from
           `default_rng([seed, i])` (i = the example's index in the split), never an item of
           the behaviour sequence or the positive.
Where the dataset has `seen_items/<split>.npz` (`tfrec.data.seen_items`: leave-one-out views
such as MovieLens' sequential one), both exclude the user's whole history before the positive,
not only the (possibly cut) behaviour sequence; the result's description says which.

Metrics at each K: HR@K (the positive in the top K), Recall@K (with one positive per example,
equal to HR@K) and NDCG@K (1 / log2(rank + 2) inside the top K). A candidate scored equal to the
positive ranks above it (pessimistic ties). Scores are the model's serving path: the query
encoded once per example, `score` against the candidates (full: one item table, encoded once).
Every result records its protocol. `python -m tfrec.evaluate` on a retrieval run calls
`evaluate_retrieval_run`.

Warm and cold users (COUPLE §4.1 reports them apart): where a split holds users with
`cold_user` = 1 (no target-domain history), the result adds "groups": the same metrics over
the warm users' examples and over the cold users' examples, beside the whole split's.
`keep_arrays` returns the per-example "user_ids", "ranks" (0-based) and "cold_user" (what the
reproduction's bootstrap over users and its warm/cold tables read), and "scenario_id".

Scenarios (M5 §5.1.1 reports HR@K per scenario): where a split's records come from more than one
`scenario_id`, the result adds "scenarios": {"scenario <id>": the same metrics over that
scenario's examples}, in id order.

On synthetic data the same candidates are also ranked by the planted oracle
(`SyntheticOracle.positive_intensities`: the expected number of target positives on each item
in the request's session, the Bayes-optimal ranking), under the same exclusions and ties: the
ceiling a model is measured against ("oracle" beside "metrics"). It is used only when every
positive has a non-zero planted intensity (else the data came from another generator version
or seed, and the result says why there is no ceiling).
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec import metrics, runs
from tfrec import config as config_lib
from tfrec.data import seen_items
from tfrec.data.pipeline import Reader
from tfrec.datasets.synthetic.oracle import OracleUnavailable, ranking_oracle_for
from tfrec.evaluation.sampled import batches, negative_pool, sample_users

FORMAT = "tfrec.evaluate.retrieval/1"
FULL = "full"
_SEQ = "seq_item_ids"


def _metrics_at(ranks: np.ndarray, ks: Sequence[int]) -> Dict[str, float]:
  out = {}
  for k in ks:
    hit = ranks < k
    out[f"hr@{k}"] = float(np.mean(hit))
    out[f"recall@{k}"] = float(np.mean(hit))  # one positive per example
    out[f"ndcg@{k}"] = float(np.mean(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)))
  return out


def full_ranks(scores: np.ndarray, positives: np.ndarray, history: np.ndarray,
               pool_mask: np.ndarray) -> np.ndarray:
  """0-based rank of each positive among the pool, its history excluded.

  Args:
    scores: <float>[b, num_items + 1] every item's score (column = item id).
    positives: <int64>[b] positive ids.
    history: <int64>[b, L] behaviour item ids (0 = padding).
    pool_mask: <bool>[num_items + 1] items that are candidates.

  Returns:
    <int64>[b] the number of eligible candidates other than the positive scored >= it.
  """
  b = len(positives)
  eligible = np.broadcast_to(pool_mask, scores.shape).copy()
  rows = np.repeat(np.arange(b), history.shape[1])
  eligible[rows, history.ravel()] = False  # the user's history (padding 0 is never in a pool)
  eligible[np.arange(b), positives] = False  # the positive is compared, not counted
  pos = scores[np.arange(b), positives][:, None]
  return np.sum(eligible & (scores >= pos), axis=1).astype(np.int64)


def evaluate_retrieval(model: Any, reader: Reader, pool: np.ndarray, protocol: str = FULL,
                       ks: Sequence[int] = (10, 50), popularity: Optional[np.ndarray] = None,
                       seed: int = 0, batch_size: int = 512, max_examples: int = 0,
                       pool_description: str = "the given pool",
                       oracle: Any = None,
                       seen: Optional[Dict[int, np.ndarray]] = None,
                       keep_arrays: bool = False,
                       traced: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """HR/Recall/NDCG@K of a retrieval model on one matching split (module docstring).

  Args:
    model: a built `RetrievalModel` (weights loaded).
    reader: a `Reader` of matching records.
    pool: <int64>[p] candidate item ids.
    protocol: "full" or a `tfrec.metrics.PROTOCOLS` name (its own K then).
    ks: the cut-offs of "full".
    popularity: <float>[num_items + 1] positives per item in the train split (protocols with
      popular negatives).
    seed: the sampled negatives' seed.
    max_examples: all examples of users sampled at random with `seed`, at most N
      (`sampled.sample_users`; 0: every example).
    oracle: a `SyntheticOracle` of the dataset, or None: rank the same candidates by its
      planted scores too (module docstring).
    seen: {user: <int>[k] items} (`tfrec.data.seen_items.load`): exclude each record's whole
      history instead of its behaviour sequence (a user missing from it: an error).
    keep_arrays: add "arrays": per example "user_ids", "ranks", "cold_user" (split order).
    traced: a dict kept by a caller that evaluates the same model again (each epoch's
      validation): the traced query and score functions are stored in it and reused, instead
      of tracing the model's encoder anew on every call.

  Raises:
    ValueError: an unknown protocol, or a pool too small for it.
  """
  proto = None
  if protocol != FULL:
    if protocol not in metrics.PROTOCOLS:
      raise ValueError(f"unknown retrieval protocol {protocol!r}; known: "
                       f"{', '.join((FULL,) + tuple(metrics.PROTOCOLS))}")
    proto = metrics.PROTOCOLS[protocol]
    ks = tuple(proto.ks)
    if proto.num_popular and popularity is None:
      raise ValueError(f"protocol {protocol} draws negatives by popularity: pass popularity")
  pool = np.asarray(pool, np.int64)
  n_items = model.num_items
  pool_mask = np.zeros(n_items + 1, bool)
  pool_mask[pool] = True
  traced = {} if traced is None else traced
  if traced.get("model") is not model:
    traced.update(model=model, encode=tf.function(
        lambda f: model.encode_user(f, training=False)["query"], reduce_retracing=True),
        score=tf.function(lambda f, c: model.score(model.encode_user(f, training=False), c),
                          reduce_retracing=True))
  encode, score = traced["encode"], traced["score"]
  table = None
  if proto is None:  # every item's vector once (row 0: padding, never a candidate)
    table = model.encode_items(tf.range(n_items + 1, dtype=tf.int64)).numpy()
  selected, sampling = None, None
  if max_examples:  # whole users sampled at random, as the ranking evaluation does
    split_users = np.concatenate([b["user_id"].numpy() for b in reader.dataset(4096)])
    selected, sampling = sample_users(split_users, max_examples, seed)
  ranks, users, colds, scens, oracle_ranks = [], [], [], [], []
  oracle_note = ""
  for _, index, batch in batches(reader.dataset(batch_size), selected):
    b = len(index)
    positives = batch["positive_item_id"].numpy().astype(np.int64)
    history = np.where(batch["seq_mask"].numpy(), batch[_SEQ].numpy(), 0).astype(np.int64)
    if seen is not None:
      history = _seen_history(seen, batch["user_id"].numpy(), history)
    if proto is None:
      query = encode(batch).numpy()  # [b, d], or [b, K, d] for multi-interest models
      scores = (query @ table.T if query.ndim == 2
                else np.einsum("bkd,nd->bkn", query, table).max(axis=1))
      ranks.append(full_ranks(scores, positives, history, pool_mask))
      cands = np.broadcast_to(np.arange(n_items + 1, dtype=np.int64), (b, n_items + 1))
    else:
      cands = np.empty((b, 1 + proto.num_negatives), np.int64)
      for r in range(b):
        rng = np.random.default_rng([seed, int(index[r])])
        excluded = np.concatenate([history[r][history[r] > 0], positives[r:r + 1]])
        cands[r, 0] = positives[r]
        cands[r, 1:] = metrics.sample_negatives(
            rng, pool, excluded, proto, None if popularity is None else popularity[pool])
      s = score(batch, tf.constant(cands)).numpy()
      ranks.append(metrics.rank_of_positive(s[:, 0], s[:, 1:]))
    users.append(batch["user_id"].numpy())
    colds.append(batch["cold_user"].numpy().astype(np.int64) if "cold_user" in batch
                 else np.zeros(b, np.int64))
    scens.append(batch["scenario_id"].numpy().astype(np.int64) if "scenario_id" in batch
                 else np.zeros(b, np.int64))
    if oracle is not None and not oracle_note:
      try:
        o = _oracle_scores(oracle, batch, cands, positives, proto is None)
        oracle_ranks.append(full_ranks(o, positives, history, pool_mask) if proto is None
                            else metrics.rank_of_positive(o[:, 0], o[:, 1:]))
      except OracleUnavailable as e:
        oracle_note = str(e)
  if not ranks:
    raise ValueError("no examples to evaluate (empty split or max_examples)")
  ranks, users, colds = np.concatenate(ranks), np.concatenate(users), np.concatenate(colds)
  scens = np.concatenate(scens)
  excluded = ("the user's whole history before the positive (seen_items) excluded"
              if seen is not None else "the user's behaviour sequence excluded")
  description = (f"full: the positive against every item of the pool ({pool_description}, "
                 f"{len(pool)} items), {excluded}"
                 if proto is None else
                 proto.describe() + f"; pool: {pool_description}; {excluded}")
  return {"format": FORMAT,
          "protocol": {"name": protocol, "ks": list(ks), "description": description,
                       "seed": seed, "ties": "a candidate scored equal to the positive ranks "
                       "above it"},
          "counts": {"examples": int(len(ranks)), "users": int(len(np.unique(users)))},
          "metrics": _metrics_at(ranks, ks), "max_examples": int(max_examples),
          **({"groups": user_groups(ranks, users, colds, ks)} if colds.any() else {}),
          **({"scenarios": scenario_groups(
              ranks, users, scens, ks,
              np.concatenate(oracle_ranks) if oracle_ranks and not oracle_note else None)}
             if len(np.unique(scens)) > 1 else {}),
          **({"sampling": sampling} if sampling else {}),
          **({"arrays": {"user_ids": users, "ranks": ranks, "cold_user": colds,
                         "scenario_id": scens}}
             if keep_arrays else {}),
          **_oracle_result(oracle, oracle_ranks, oracle_note, ks)}


GROUPS = {"warm users": 0, "cold users": 1}


def user_groups(ranks: np.ndarray, users: np.ndarray, cold_user: np.ndarray,
                ks: Sequence[int]) -> Dict[str, Dict[str, Any]]:
  """The metrics over the examples of warm (`cold_user` 0) and of cold (1) users.

  Args:
    ranks, users, cold_user: <int64>[n] per example.
    ks: the cut-offs.

  Returns:
    {"warm users" | "cold users": {"examples", "users", "metrics"}} (a group without examples
    is left out).
  """
  out = {}
  for name, flag in GROUPS.items():
    sel = cold_user == flag
    if sel.any():
      out[name] = {"examples": int(sel.sum()), "users": int(len(np.unique(users[sel]))),
                   "metrics": _metrics_at(ranks[sel], ks)}
  return out


def scenario_name(scenario: int) -> str:
  return f"scenario {int(scenario)}"


def scenario_groups(ranks: np.ndarray, users: np.ndarray, scenario: np.ndarray,
                    ks: Sequence[int], oracle_ranks: Optional[np.ndarray] = None
                    ) -> Dict[str, Dict[str, Any]]:
  """The metrics over each scenario's examples (M5 §5.1.1), in scenario-id order.

  Args:
    ranks, users, scenario: <int64>[n] per example.
    ks: the cut-offs.
    oracle_ranks: <int64>[n] the planted oracle's ranks of the same examples, or None.

  Returns:
    {"scenario <id>": {"examples", "users", "metrics"[, "oracle"]}} for each id present.
  """
  out = {}
  for s in np.unique(scenario):
    sel = scenario == s
    out[scenario_name(s)] = {"examples": int(sel.sum()), "users": int(len(np.unique(users[sel]))),
                             "metrics": _metrics_at(ranks[sel], ks),
                             **({"oracle": _metrics_at(oracle_ranks[sel], ks)}
                                if oracle_ranks is not None else {})}
  return out


def _oracle_scores(oracle: Any, batch: Dict[str, Any], cands: np.ndarray, positives: np.ndarray,
                   full: bool) -> np.ndarray:
  """<float64>[b, c] the planted intensities of `cands` (full: column = item id)."""
  o = oracle.positive_intensities(batch["user_id"].numpy(), batch["timestamp"].numpy(),
                                  batch["scenario_id"].numpy(), np.asarray(cands))
  own = o[np.arange(len(positives)), positives] if full else o[:, 0]
  if np.any(own <= 0):
    raise OracleUnavailable(f"{int(np.sum(own <= 0))} positives have no planted intensity: "
                            "the data were written by another generator version or seed")
  return o


def _oracle_result(oracle: Any, ranks: Sequence[np.ndarray], note: str,
                   ks: Sequence[int]) -> Dict[str, Any]:
  if oracle is None:
    return {}
  if note or not ranks:
    return {"oracle": {"available": False, "why": note or "no examples"}}
  return {"oracle": {"available": True, "metrics": _metrics_at(np.concatenate(ranks), ks),
                     "what": "the planted expected number of positives on each candidate in "
                             "the request's session (synthetic ceiling)"}}


def _seen_history(seen: Dict[int, np.ndarray], users: np.ndarray,
                  sequence: np.ndarray) -> np.ndarray:
  """<int64>[b, L'] each row's seen items and behaviour sequence, 0-padded.

  Raises:
    ValueError: a user without seen items (the file belongs to another dataset build).
  """
  rows = []
  for u, s in zip(users.tolist(), sequence):
    if int(u) not in seen:
      raise ValueError(f"user {u} has a record but no seen items: seen_items/ does not belong "
                       "to this split (rebuild the dataset)")
    rows.append(np.concatenate([seen[int(u)], s[s > 0]]))
  out = np.zeros([len(rows), max(1, max(len(r) for r in rows))], np.int64)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def train_popularity(cfg: config_lib.RunConfig, num_items: int, info=None) -> np.ndarray:
  """<float64>[num_items + 1] positives per item in the run's matching train split."""
  counts = np.zeros(num_items + 1, np.float64)
  reader = runs.reader(cfg, cfg.data.train_split, training=False, info=info, kind="matching")
  for batch in reader.dataset(4096):
    np.add.at(counts, batch["positive_item_id"].numpy(), 1)
  return counts


def evaluate_retrieval_run(run_dir: str, split: str = "test", protocol: str = FULL,
                           ks: Sequence[int] = (10, 50), checkpoint: str = "best",
                           pool: str = "auto", seed: int = 0, max_examples: int = 0,
                           batch_size: int = 512, keep_arrays: bool = False) -> Dict[str, Any]:
  """`evaluate_retrieval` of a run directory's model on `split`, with provenance."""
  model, cfg, info, store = runs.restore_model(run_dir, checkpoint)
  ids, desc = negative_pool(store, split, pool)
  reader = runs.reader(cfg, split, training=False, info=info, kind="matching")
  popularity = (train_popularity(cfg, model.num_items, info)
                if protocol != FULL and metrics.PROTOCOLS.get(protocol) is not None
                and metrics.PROTOCOLS[protocol].num_popular else None)
  oracle, why = ranking_oracle_for(info, store)
  seen = seen_items.load(cfg.data.data_dir, split)
  result = evaluate_retrieval(model, reader, ids, protocol, ks, popularity, seed, batch_size,
                              max_examples, pool_description=f"{desc} (--negative_pool={pool})",
                              oracle=oracle, seen=seen, keep_arrays=keep_arrays)
  if oracle is None:
    result["oracle"] = {"available": False, "why": why}
  return {"split": split, "run_dir": run_dir,
          "checkpoint": {"which": checkpoint, "path": runs.checkpoint_path(run_dir, checkpoint)},
          "model": {"name": cfg.model.name, "kwargs": dict(cfg.model.kwargs)},
          "validation": {"split": cfg.data.valid_split,
                         "allow_test_validation": cfg.train.allow_test_validation},
          "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          **result}


class RetrievalValidation(keras.callbacks.Callback):
  """Adds "val_<metric>@K" to each epoch's logs: the model evaluated on the valid split as
  `evaluate_retrieval` reports a test split (`TrainConfig.valid_retrieval` =
  "<protocol>:<metric>@<K>[:<max examples>]"; the default candidate pool of the split, seen
  items excluded where the dataset has them, negatives and sampled users seeded 0 so every
  epoch and run meets the same examples and candidates).
  Put it before the callbacks that monitor it (best checkpoint, early stopping).

  Raises (at construction):
    ValueError: a bad spec, an unknown protocol, or a K the sampled protocol does not report.
  """

  def __init__(self, cfg: config_lib.RunConfig, info: Any, store: Any, spec: str):
    super().__init__()
    self.protocol, self.metric, k, self.max_examples = config_lib.parse_valid_retrieval(spec)
    if self.protocol != FULL:
      proto = metrics.PROTOCOLS.get(self.protocol)
      if proto is None:
        raise ValueError(f"valid_retrieval={spec!r}: unknown protocol {self.protocol!r}; known: "
                         f"{', '.join((FULL,) + tuple(metrics.PROTOCOLS))}")
      if k not in proto.ks:
        raise ValueError(f"valid_retrieval={spec!r}: protocol {self.protocol} reports K in "
                         f"{tuple(proto.ks)}")
    self.ks = (k,)
    self.name = f"val_{self.metric}"
    split = cfg.data.valid_split
    self.reader = runs.reader(cfg, split, training=False, info=info, kind="matching")
    self.pool, _ = negative_pool(store, split, "auto")
    self.popularity = (train_popularity(cfg, info.num_items, info)
                       if self.protocol != FULL and metrics.PROTOCOLS[self.protocol].num_popular
                       else None)
    self.seen = seen_items.load(cfg.data.data_dir, split)
    self._traced: Dict[str, Any] = {}  # the query encoder traced once, reused every epoch

  def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
    result = evaluate_retrieval(self.model, self.reader, self.pool, self.protocol, self.ks,
                                self.popularity, seed=0, max_examples=self.max_examples,
                                seen=self.seen, traced=self._traced)
    if logs is not None:
      logs[self.name] = result["metrics"][self.metric]


def to_markdown(result: Dict[str, Any]) -> str:
  """The result as a markdown table headed by what was measured and how."""
  lines = [f"### tfrec.evaluate (retrieval): {result['model']['name']}, split {result['split']}",
           "", f"- protocol: {result['protocol']['description']}; seed {result['protocol']['seed']}",
           f"- examples: {result['counts']['examples']}, users: {result['counts']['users']}",
           f"- validated on `{result['validation']['split']}`", "",
           "| metric | model | planted oracle |", "|---|---:|---:|"]
  oracle = result.get("oracle", {})
  ceiling = oracle.get("metrics", {}) if oracle.get("available") else {}
  lines += [f"| {k} | {v:.4f} | {ceiling[k]:.4f} |" if k in ceiling else f"| {k} | {v:.4f} | |"
            for k, v in result["metrics"].items()]
  if oracle and not oracle.get("available"):
    lines += ["", f"No planted oracle: {oracle.get('why')}"]
  groups = result.get("groups", {})
  if groups:
    names = list(groups)
    lines += ["", "By user group (`cold_user`: no target-domain history):", "",
              "| metric | " + " | ".join(f"{n} ({groups[n]['examples']} examples, "
                                         f"{groups[n]['users']} users)" for n in names) + " |",
              "|---|" + "---:|" * len(names)]
    lines += [f"| {k} | " + " | ".join(f"{groups[n]['metrics'][k]:.4f}" for n in names) + " |"
              for k in result["metrics"]]
  scenarios = result.get("scenarios", {})
  if scenarios:
    names = list(scenarios)
    lines += ["", "By scenario (`scenario_id` of the request):", "",
              "| metric | " + " | ".join(f"{n} ({scenarios[n]['examples']} examples)"
                                         for n in names) + " |",
              "|---|" + "---:|" * len(names)]
    lines += [f"| {k} | " + " | ".join(f"{scenarios[n]['metrics'][k]:.4f}" for n in names)
              + " |" for k in result["metrics"]]
  return "\n".join(lines) + "\n"


__all__ = ["FULL", "GROUPS", "RetrievalValidation", "user_groups", "scenario_groups", "scenario_name", "evaluate_retrieval", "evaluate_retrieval_run", "full_ranks",
           "to_markdown", "train_popularity"]
