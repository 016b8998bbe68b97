"""Offline evaluation of ranking models (`python -m tfrec.evaluate` is its command line).

Evaluates a trained run (its `config.json` and a checkpoint) on ranking splits and writes the
result as JSON and as a markdown table, both recording the protocol, because the same model
scores very differently under each (sampled vs full ranking, the negatives, the GAUC reduction).

Metrics (`tfrec.metrics`):
  AUC     over every example of the split (logits; ties count 1/2).
  GAUC    per-user AUC (THACIL eq. 11, ADAPT eq. 12), users with one class skipped and
          counted, reduced by `gauc_reduction`: "mean" (plain mean over users: EasyRec),
          "samples" (weighted by the user's examples: FuxiCTR, THACIL's code; the default),
          "positives" (weighted by the user's positives: RecBole).
  HR@K, NDCG@K  sampled ranking (`protocol`, `tfrec.metrics.PROTOCOLS`): every positive example
          (label 1) is ranked against negatives drawn for it: SEMI §4.2.2: 300 random unseen,
          K=3; ADAPT: K=5 (negatives as SEMI); COUPLE: 50 random + 50 by popularity, K=5,10.
          A negative scored equal to the positive ranks above it (pessimistic ties).

Sampled-ranking choices (recorded in every result):
  pool        target-domain items; "auto" = the non-cold ones for a warm split and the cold
              ones for a split whose name contains "cold" (a cold-start positive competes with
              other new items, not with items whose embeddings were trained); "warm", "cold"
              and "all" force one. A pool too small for the protocol is an error, not a quietly
              smaller protocol.
  excluded    per example: its target-domain history (as the model reads it, `max_seq_len`
              newest), the positive itself, the user's positives in the train split and the
              user's other positives in the evaluated split (a known like is never a negative).
  popularity  COUPLE's popular negatives are drawn proportionally to the number of times the
              item is a positive in the train split (cold items have 0: for a cold pool the
              "popular" draw is uniform over the eligible cold items).
  seed        the negatives of the i-th example of the split (in the reader's deterministic
              order) come from `default_rng([eval_seed, i])`: they do not depend on the model,
              the batch size or `--max_examples`. `checks.negatives_sha256` fingerprints them.
  scoring     the serving path (SEMI App. A.3): `user = model.encode_user(features)` once, then
              `model.score(user, candidates)` with <int64>[n, 1 + negatives] candidates, the
              positive in column 0; `item_id` is withheld from `encode_user`, which must not
              depend on the candidate. `checks.encode_once_max_abs_diff` compares column 0
              with the pointwise logits of `model(features)`.

Examples: every example of the split, or with `max_examples=N` all examples of users sampled at
random with the eval seed, at most N (`sampled.SAMPLING_RULE` states the rule; the result records
it under "sampling" and protocol "examples"): never simply the first records.

Validation (recorded under "validation", printed in the markdown header): the split the run
validated on while training (early stopping and `checkpoints/best`: `cfg.data.valid_split`)
and whether `allow_test_validation` was set; a WARNING line when that split is the evaluated
one or a test split, because the reported numbers were then chosen on the data they report.

Oracle (the ceiling, synthetic data only):
  AUC/GAUC of the records' `oracle_prob` (the planted P(click)) on the same rows; not
  available when any row carries -1 (real data). HR/NDCG of the planted P(click) of every
  candidate, re-simulated by `tfrec.datasets.synthetic.oracle` and used only if it reproduces every
  ranked row's recorded `oracle_prob`; otherwise reported as not available, with the reason.

Outputs (`tfrec.evaluation.report`): `<run_dir>/eval/<split>.json` and `.md` by default (atomic
writes); `--output_json` / `--output_md` accept `{split}`, `{checkpoint}`, `{protocol}` and
`{reduction}` placeholders (needed with several splits). The markdown table is printed.

Python API (the reproduction harness uses it): `load_run`, `evaluate_split` (a run on one
split, with the pool, popularity, exclusions and oracle resolved as above) and `evaluate` (any
model on any reader or dataset, every choice an argument); `to_markdown`, `write_result` (from
`tfrec.evaluation.report`).
"""

from __future__ import annotations

import dataclasses
import datetime
import weakref
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

import numpy as np
import tensorflow as tf

from tfrec import config as config_lib
from tfrec import runs
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.pipeline import Reader
from tfrec.datasets.synthetic.oracle import SyntheticOracle, ranking_oracle_for
from tfrec.evaluation.pointwise import KEPT, pointwise_pass, pointwise_result
from tfrec.evaluation.sampled import (Negatives, TrainStats, add_sampled_result, check_pool_size,
                                      negative_pool, resolve_protocol, sample_users,
                                      sampled_pass, train_stats)
from tfrec.metrics.ranking import GAUC_REDUCTIONS, SampledProtocol
from tfrec.models import registry
from tfrec.models.base import RankingModel


_FUNCTIONS: "weakref.WeakKeyDictionary[Any, Tuple[Callable, Callable]]" = (
    weakref.WeakKeyDictionary())


def _scoring_functions(model: RankingModel) -> Tuple[Callable, Callable]:
  """(pointwise, sampled) tf.functions of a model, traced once per model and reused.

  pointwise: features -> <float32>[batch] logits (`model(features)`, the training path).
  sampled: (features without item_id, <int64>[n, c] candidates) -> <float32>[n, c] through
    `encode_user` once and `score` (the serving path).
  """
  if model in _FUNCTIONS:
    return _FUNCTIONS[model]

  @tf.function(reduce_retracing=True)
  def pointwise(features):
    return model(features, training=False)

  @tf.function(reduce_retracing=True)
  def scores(features, candidate_ids):
    user = model.encode_user(features, training=False)
    return model.score(user, candidate_ids, training=False)

  def sampled(features, candidate_ids):
    try:
      return scores(features, candidate_ids)
    except KeyError as e:
      raise ValueError(f"{type(model).__name__}.encode_user reads feature {e}, which evaluate "
                       "does not pass to it (item_id is withheld: the user encoding must not "
                       "depend on the candidate, see tfrec/models/base.py)") from None

  _FUNCTIONS[model] = (pointwise, sampled)
  return pointwise, sampled


def evaluate(model: RankingModel,
             data: Union[Reader, tf.data.Dataset],
             protocol: Union[str, SampledProtocol, None] = "semi",
             gauc_reduction: str = "samples",
             negative_pool: Optional[np.ndarray] = None,
             popularity: Optional[np.ndarray] = None,
             seen_items: Optional[Mapping[int, np.ndarray]] = None,
             exclude_split_positives: bool = True,
             ranking_oracle: Optional[SyntheticOracle] = None,
             ranking_oracle_reason: str = "no ranking oracle was given",
             seed: int = 0,
             batch_size: int = 1024,
             max_examples: int = 0,
             max_pairs_per_step: int = 16_384,
             paths: Optional[Sequence[str]] = None,
             pool_description: str = "the given pool",
             seen_description: str = "the given seen items of the user",
             popularity_description: str = "the given popularity",
             keep_arrays: bool = False,
             topk_ks: Sequence[int] = ()) -> Dict[str, Any]:
  """Evaluates a ranking model on one split: pointwise AUC/GAUC and sampled HR@K/NDCG@K.

  Args:
    model: a built `RankingModel` (weights loaded).
    data: a `Reader` of ranking records (read with `batch_size`; `with_provenance=True` lets
      errors name file and record), or a `tf.data.Dataset` of reader batches (with "label").
      It is iterated twice (pointwise, then sampled) and must give the same order both times.
    protocol: a `tfrec.metrics.PROTOCOLS` name, a `SampledProtocol`, or "none"/None (no
      sampled ranking).
    gauc_reduction: "mean", "samples" or "positives" (module docstring).
    negative_pool: <int64>[p] candidate negatives (needed with a protocol; `negative_pool()`).
    popularity: <float>[num_items + 1] item weights indexed by item id (protocols with
      popularity negatives; `train_stats().popularity`).
    seen_items: user id -> <int64>[s] items never drawn as the user's negatives, on top of the
      example's target history and its positive (e.g. `train_stats().seen`).
    exclude_split_positives: also exclude the user's positives in this split.
    ranking_oracle: P(click) of any candidate (`SyntheticOracle`), for the HR/NDCG ceiling;
      used only if it reproduces every ranked row's `oracle_prob`.
    ranking_oracle_reason: why there is no ranking oracle (recorded when it is None).
    seed: negatives of the split's i-th example come from `default_rng([seed, i])`.
    batch_size: reader batch size.
    max_examples: evaluate all examples of users sampled at random with `seed`, at most N
      examples (0: every example; `sampled.sample_users` and `SAMPLING_RULE` give the exact
      rule, which the result records under "sampling" and protocol "examples").
    max_pairs_per_step: (user, candidate) pairs scored per call (bounds memory for models that
      run attention per candidate).
    paths: the shard paths that the batches' `_file` indexes, to name a record in errors
      (default: the `Reader`'s own).
    pool_description: how `negative_pool` was chosen (recorded).
    seen_description: what `seen_items` holds (recorded).
    popularity_description: what `popularity` counts (recorded).
    keep_arrays: also return numpy arrays under "arrays" (not JSON-serialisable): per example
      "labels", "logits", "user_ids", "item_ids", "oracle_prob", "source_len", "target_len"
      (history lengths after truncation) (and "file", "record" when
      the data carry provenance: index into `Reader.paths`, record in that file); per ranked
      positive "rows" (indices into the examples), "candidates" <int64>[n, 1 + m], "scores"
      <float32>[n, 1 + m] and "oracle_scores" <float64>[n, 1 + m] (None without an oracle).
    topk_ks: THACIL §4.4's top-K metrics of each user's impressions at these K (empty: none;
      `pointwise.topk_result`), under "topk" and as "topk_<metric>@K" in "metrics".

  Returns:
    a JSON-ready dict: "counts", "metrics", "oracle", "gauc", "protocol", "checks",
    "max_examples", "sampling" (values that could not be computed are NaN, with the reason in
    "oracle").

  Raises:
    ValueError: a pool too small for the protocol (naming the example), a model that reads the
      candidate in `encode_user`, or a reader whose order changes between passes.
  """
  proto = resolve_protocol(protocol)
  _check_arguments(proto, gauc_reduction, negative_pool, popularity, pool_description)
  if paths is None and isinstance(data, Reader):
    paths = list(data.paths)
  ds = data.dataset(batch_size) if isinstance(data, Reader) else data  # built once: tracing
  pointwise, score = _scoring_functions(model)
  selected, sampling = None, None
  if max_examples:
    users = [batch["user_id"].numpy() for batch in ds]
    selected, sampling = sample_users(np.concatenate(users) if users else np.zeros(0, np.int64),
                                      max_examples, seed)
  cols = pointwise_pass(ds, pointwise, selected)
  result = pointwise_result(cols, gauc_reduction, sampling, topk_ks)
  arrays = {k: cols[k] for k in KEPT if k in cols}
  if proto is None:
    result["protocol"] = {"ranking": "none", "name": "none",
                          "description": "pointwise only: no HR@K/NDCG@K"}
    result["oracle"]["ranking"] = "no sampled ranking"
    result["checks"] = {}
  else:
    negatives = Negatives.for_split(
        proto, cols, negative_pool, popularity, seen_items, exclude_split_positives, seed,
        paths, pool_description, seen_description, popularity_description)
    ranked = sampled_pass(ds, score, cols, negatives, ranking_oracle, ranking_oracle_reason,
                          selected, max_pairs_per_step, keep_arrays)
    add_sampled_result(result, ranked, negatives)
    if keep_arrays:
      arrays.update(ranked.arrays(1 + proto.num_negatives))
  result["protocol"]["examples"] = result["sampling"]["rule"]
  if keep_arrays:
    result["arrays"] = arrays
  return result


def _check_arguments(proto: Optional[SampledProtocol], gauc_reduction: str,
                     negative_pool: Optional[np.ndarray], popularity: Optional[np.ndarray],
                     pool_description: str) -> None:
  """`evaluate`'s arguments, checked before any reading."""
  if gauc_reduction not in GAUC_REDUCTIONS:
    raise ValueError(f"gauc_reduction must be one of {GAUC_REDUCTIONS}, not {gauc_reduction!r}")
  if proto is None:
    return
  if negative_pool is None:
    raise ValueError(f"protocol {proto.name} needs a negative_pool (see negative_pool())")
  check_pool_size(proto, negative_pool, pool_description)
  if proto.num_popular and popularity is None:
    raise ValueError(f"protocol {proto.name} draws negatives by popularity: pass popularity")


@dataclasses.dataclass
class LoadedRun:
  """A run's model with its weights, configuration and dataset (`load_run`)."""

  model: RankingModel
  cfg: config_lib.RunConfig
  info: DatasetInfo
  store: ItemStore
  run_dir: str
  checkpoint: str       # "best", "final" or the prefix given
  checkpoint_path: str  # the prefix loaded
  run_data_dir: str = ""  # the run's own dataset when `data_dir` overrides it
  _train_stats: Optional[TrainStats] = None
  _oracle: Optional[Tuple[Optional[SyntheticOracle], str]] = None

  @property
  def data_dir(self) -> str:
    return self.cfg.data.data_dir

  def train_stats(self, batch_size: int = 4096) -> TrainStats:
    """Popularity and seen items of the run's train split (read once, cached)."""
    if self._train_stats is None:
      reader = runs.reader(self.cfg, self.cfg.data.train_split, training=False, info=self.info)
      self._train_stats = train_stats(reader, self.info.num_items, batch_size)
    return self._train_stats

  def ranking_oracle(self) -> Tuple[Optional[SyntheticOracle], str]:
    if self._oracle is None:
      self._oracle = ranking_oracle_for(self.info, self.store)
    return self._oracle


def load_run(run_dir: str, checkpoint: str = "best", data_dir: Optional[str] = None
             ) -> LoadedRun:
  """Rebuilds a run's model from `config.json` and loads one checkpoint.

  Args:
    run_dir: a run directory written by `python -m tfrec.train`.
    checkpoint: "best", "final" (exactly that one: `runs.checkpoint_path`) or a prefix.
    data_dir: evaluate on this dataset directory instead of the run's (same vocabularies).
  """
  cfg = config_lib.RunConfig.load(run_dir)
  run_data_dir = ""
  if data_dir and data_dir != cfg.data.data_dir:
    run_data_dir = cfg.data.data_dir
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=data_dir))
  path = runs.checkpoint_path(run_dir, checkpoint)  # fails before the model is built
  model, _, info, store = runs.restore_model(run_dir, path, data_dir=cfg.data.data_dir,
                                             ranking_only=True)
  return LoadedRun(model=model, cfg=cfg, info=info, store=store, run_dir=run_dir,
                   checkpoint=checkpoint, checkpoint_path=path, run_data_dir=run_data_dir)


def validation_record(cfg: config_lib.RunConfig, split: str) -> Dict[str, Any]:
  """What `cfg`'s run validated on while training, and whether that touched `split`.

  Returns:
    {"split": the validated split (None: no validation), "allow_test_validation": the run's
    setting, "touches_evaluated_split": bool, "warning": "" or the WARNING text}.
  """
  valid = cfg.data.valid_split
  allow = cfg.train.allow_test_validation
  validated = cfg.train.validation_steps != 0 and registry.get(cfg.model.name).cls.VALIDATES
  warning = ""
  if validated and valid == split:
    warning = (f"the run validated on {valid!r}, the split evaluated here: its epochs and best "
               "checkpoint were chosen on these examples, so these numbers are optimistic")
  elif validated and config_lib.is_reported_split(valid):
    warning = (f"the run validated on {valid!r}, a test split: its epochs and best checkpoint "
               "were chosen on test data")
  return {"split": valid if validated else None, "allow_test_validation": allow,
          "touches_evaluated_split": validated and valid == split, "warning": warning}


def evaluate_split(run: LoadedRun, split: Optional[str] = None,
                   protocol: Union[str, SampledProtocol, None] = "semi",
                   gauc_reduction: str = "samples", pool: str = "auto", seed: int = 0,
                   max_examples: int = 0, batch_size: int = 1024,
                   keep_arrays: bool = False, topk_ks: Sequence[int] = ()) -> Dict[str, Any]:
  """`evaluate` of a loaded run on `split` (default: "test"), with provenance.

  The negative pool follows `pool` (`negative_pool`); popularity and the user's seen items
  come from the run's train split; the ranking oracle from `SyntheticOracle` when the dataset
  is synthetic. The result adds "split", "run_dir", "checkpoint", "model", "dataset",
  "validation" (`validation_record`), "created".
  """
  split = split or "test"
  proto = resolve_protocol(protocol)
  reader = runs.reader(run.cfg, split, training=False, info=run.info, with_provenance=True)
  kwargs: Dict[str, Any] = {}
  if proto is not None:
    ids, desc = negative_pool(run.store, split, pool)
    desc = f"{desc} (--negative_pool={pool})"
    check_pool_size(proto, ids, desc)
    stats = run.train_stats()
    oracle, reason = run.ranking_oracle()
    kwargs = dict(negative_pool=ids, pool_description=desc,
                  popularity=stats.popularity, seen_items=stats.seen,
                  seen_description="the user's positives in the train split",
                  popularity_description="times the item is a positive in the train split",
                  ranking_oracle=oracle,
                  ranking_oracle_reason=reason)
  result = evaluate(run.model, reader, protocol=proto, gauc_reduction=gauc_reduction,
                    seed=seed, batch_size=batch_size, max_examples=max_examples,
                    keep_arrays=keep_arrays, topk_ks=topk_ks, **kwargs)
  prov = {
      "split": split,
      "split_records": int(reader.num_records),
      "run_dir": run.run_dir,
      "checkpoint": {"which": run.checkpoint, "path": run.checkpoint_path},
      "model": {"name": run.cfg.model.name, "kwargs": dict(run.cfg.model.kwargs),
                "max_seq_len": run.cfg.data.max_seq_len},
      "dataset": {"dir": run.data_dir, "name": run.info.name,
                  **({"run_data_dir": run.run_data_dir} if run.run_data_dir else {})},
      "validation": validation_record(run.cfg, split),
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  return {**prov, **result}
