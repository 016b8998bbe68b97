"""`python -m tfrec.evaluate --flagfile=configs/<paper>/<variant>.flags`: offline evaluation.

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

Oracle (the ceiling, synthetic data only):
  AUC/GAUC of the records' `oracle_prob` (the planted P(click)) on the same rows; not
  available when any row carries -1 (real data). HR/NDCG of the planted P(click) of every
  candidate, re-simulated by `tfrec.data.synthetic_oracle` and used only if it reproduces every
  ranked row's recorded `oracle_prob`; otherwise reported as not available, with the reason.

Outputs (`tfrec.eval_report`): `<run_dir>/eval/<split>.json` and `.md` by default (atomic
writes); `--output_json` / `--output_md` accept `{split}`, `{checkpoint}`, `{protocol}` and
`{reduction}` placeholders (needed with several splits). The markdown table is printed.

Python API (the reproduction harness uses it): `load_run`, `evaluate_split` (a run on one
split, with the pool, popularity, exclusions and oracle resolved as above) and `evaluate` (any
model on any reader or dataset, every choice an argument); `to_markdown`, `write_result` (from
`tfrec.eval_report`).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import sys
import weakref
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from tfrec import config as config_lib
from tfrec import flags as tfrec_flags
from tfrec import metrics
from tfrec import runs
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.pipeline import Reader
from tfrec.data.synthetic_oracle import SyntheticOracle, ranking_oracle_for
from tfrec.eval_report import output_path, to_markdown, write_result
from tfrec.eval_sampling import (POOLS, PROTOCOL_NAMES, Negatives, TrainStats,
                                 add_sampled_result, batches, check_pool_size, has_oracle_prob,
                                 model_features, negative_pool, resolve_protocol, sampled_pass,
                                 train_stats)
from tfrec.metrics.ranking import GAUC_REDUCTIONS, SampledProtocol
from tfrec.models.base import RankingModel

FLAGS = flags.FLAGS
FORMAT = "tfrec.evaluate/1"
# Pass 1 keeps these per example; "file" and "record" too when the data carry provenance.
_COLUMNS = ("labels", "logits", "user_ids", "item_ids", "oracle_prob", "timestamps",
            "scenario_ids", "source_len", "target_len")
_KEPT = ("labels", "logits", "user_ids", "item_ids", "oracle_prob", "source_len", "target_len",
         "file", "record")

_REDUCTION_TEXT = {
    "mean": "plain mean over users (EasyRec)",
    "samples": "weighted by the user's examples (FuxiCTR, THACIL's code)",
    "positives": "weighted by the user's positives (RecBole)",
}


# ----------------------------------------------------------------------------- evaluation


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


def _pointwise_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray,
                       reduction: str) -> Dict[str, Any]:
  g = metrics.gauc(users, labels, scores, reduction)
  return {"auc": metrics.auc(labels, scores), "gauc": g["gauc"], "users": g["users"],
          "users_skipped": g["users_skipped"]}


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
             keep_arrays: bool = False) -> Dict[str, Any]:
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
    max_examples: evaluate the first N examples only (0: all).
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

  Returns:
    a JSON-ready dict: "counts", "metrics", "oracle", "gauc", "protocol", "checks",
    "max_examples" (values that could not be computed are NaN, with the reason in "oracle").

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
  cols = _pointwise_pass(ds, pointwise, max_examples)
  result = _pointwise_result(cols, gauc_reduction, max_examples)
  arrays = {k: cols[k] for k in _KEPT if k in cols}
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
                          max_examples, max_pairs_per_step, keep_arrays)
    add_sampled_result(result, ranked, negatives)
    if keep_arrays:
      arrays.update(ranked.arrays(1 + proto.num_negatives))
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


# ----------------------------------------------------------------------------- pointwise pass


def _pointwise_pass(ds: tf.data.Dataset, pointwise: Callable, max_examples: int
                    ) -> Dict[str, np.ndarray]:
  """Pass 1: per example of the split (`_COLUMNS`, and "file", "record" with provenance) its
  label, ids, request time, scenario, recorded oracle_prob (-1 when absent) and the pointwise
  logit of the training path, `model(features)`."""
  cols: Dict[str, list] = {k: [] for k in _COLUMNS}
  for _, batch in batches(ds, max_examples):
    n = int(tf.shape(batch["label"])[0])
    cols["labels"].append(batch["label"].numpy())
    cols["logits"].append(pointwise(model_features(batch)).numpy())
    cols["user_ids"].append(batch["user_id"].numpy())
    cols["item_ids"].append(batch["item_id"].numpy())
    cols["oracle_prob"].append(batch["oracle_prob"].numpy() if "oracle_prob" in batch
                               else np.full(n, -1.0, np.float32))
    cols["timestamps"].append(batch["timestamp"].numpy())
    cols["scenario_ids"].append(batch["scenario_id"].numpy() if "scenario_id" in batch
                                else np.zeros(n, np.int64))
    for d in ("source", "target"):  # history lengths (after truncation): user activity groups
      mask = batch.get(f"{d}_mask")
      cols[f"{d}_len"].append(np.zeros(n, np.int64) if mask is None
                              else np.sum(mask.numpy(), axis=1).astype(np.int64))
    if "_file" in batch:
      cols.setdefault("file", []).append(batch["_file"].numpy())
      cols.setdefault("record", []).append(batch["_record"].numpy())
  if not cols["labels"]:
    raise ValueError("no examples to evaluate (empty split or max_examples)")
  return {k: np.concatenate(v) for k, v in cols.items()}


def _pointwise_result(cols: Mapping[str, np.ndarray], reduction: str, max_examples: int
                      ) -> Dict[str, Any]:
  """The result's counts, AUC/GAUC of the model and of the records' oracle_prob, GAUC notes."""
  labels = cols["labels"].astype(np.int64)
  users = cols["user_ids"].astype(np.int64)
  model_pw = _pointwise_metrics(labels, cols["logits"], users, reduction)
  if has_oracle_prob(cols):
    oracle_pw = _pointwise_metrics(labels, cols["oracle_prob"], users, reduction)
    pointwise_note = "AUC/GAUC of the records' oracle_prob (the planted P(click))"
  else:
    missing = int(np.sum(cols["oracle_prob"] < 0))
    oracle_pw = {"auc": math.nan, "gauc": math.nan}
    pointwise_note = (f"not available: {missing} of {len(labels)} examples carry no "
                      "oracle_prob (-1: not synthetic data)")
  return {
      "format": FORMAT,
      "counts": {"examples": int(len(labels)), "users": int(len(np.unique(users))),
                 "positives": int(labels.sum()), "negatives": int(len(labels) - labels.sum())},
      "metrics": {"auc": model_pw["auc"], "gauc": model_pw["gauc"]},
      "oracle": {"auc": oracle_pw["auc"], "gauc": oracle_pw["gauc"],
                 "pointwise": pointwise_note},
      "gauc": {"reduction": reduction, "definition": "per-user AUC (THACIL eq. 11, ADAPT "
               "eq. 12) over users with both classes, " + _REDUCTION_TEXT[reduction],
               "users": model_pw["users"], "users_skipped": model_pw["users_skipped"]},
      "max_examples": int(max_examples),
  }


# ----------------------------------------------------------------------------- runs


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


def evaluate_split(run: LoadedRun, split: Optional[str] = None,
                   protocol: Union[str, SampledProtocol, None] = "semi",
                   gauc_reduction: str = "samples", pool: str = "auto", seed: int = 0,
                   max_examples: int = 0, batch_size: int = 1024,
                   keep_arrays: bool = False) -> Dict[str, Any]:
  """`evaluate` of a loaded run on `split` (default: the run's eval split), with provenance.

  The negative pool follows `pool` (`negative_pool`); popularity and the user's seen items
  come from the run's train split; the ranking oracle from `SyntheticOracle` when the dataset
  is synthetic. The result adds "split", "run_dir", "checkpoint", "model", "dataset", "created".
  """
  split = split or run.cfg.data.eval_split
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
                    keep_arrays=keep_arrays, **kwargs)
  prov = {
      "split": split,
      "split_records": int(reader.num_records),
      "run_dir": run.run_dir,
      "checkpoint": {"which": run.checkpoint, "path": run.checkpoint_path},
      "model": {"name": run.cfg.model.name, "kwargs": dict(run.cfg.model.kwargs),
                "max_seq_len": run.cfg.data.max_seq_len},
      "dataset": {"dir": run.data_dir, "name": run.info.name,
                  **({"run_data_dir": run.run_data_dir} if run.run_data_dir else {})},
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  return {**prov, **result}


# ----------------------------------------------------------------------------- CLI


def define_flags() -> None:
  """The shared flags (`tfrec.flags`: --run_dir, --checkpoint, ...) plus evaluate's own
  (idempotent)."""
  tfrec_flags.define_flags()
  if "splits" in FLAGS:
    return
  flags.DEFINE_list("splits", None, "Ranking splits to evaluate (default: --eval_split when "
                    "set, else the run's eval split), e.g. test,test_cold.")
  flags.DEFINE_enum("gauc_reduction", "samples", list(GAUC_REDUCTIONS), "GAUC over users: mean "
                    "(EasyRec), samples (weighted by the user's examples: FuxiCTR, THACIL's "
                    "code), positives (RecBole).")
  flags.DEFINE_enum("protocol", "semi", list(PROTOCOL_NAMES), "Sampled ranking: semi (300 "
                    "random unseen negatives, K=3), adapt (K=5), couple (50 random + 50 "
                    "popular, K=5,10), none (AUC/GAUC only).")
  flags.DEFINE_enum("negative_pool", "auto", list(POOLS), "Negatives come from target items: "
                    "auto (the cold ones for a split named *cold*, else the non-cold ones), "
                    "warm, cold or all.")
  flags.DEFINE_integer("eval_seed", 0, "Seed of the sampled negatives.")
  flags.DEFINE_integer("max_examples", 0, "Evaluate the first N examples of a split (0: all).")
  flags.DEFINE_string("output_json", None, "JSON result path (default <run_dir>/eval/"
                      "<split>.json); may use {split} {checkpoint} {protocol} {reduction}.")
  flags.DEFINE_string("output_md", None, "Markdown result path (default <run_dir>/eval/"
                      "<split>.md); same placeholders.")


def _splits(fl, cfg: config_lib.RunConfig) -> Sequence[str]:
  if fl.splits:
    return [s.strip() for s in fl.splits if s.strip()]
  if not fl["eval_split"].using_default_value:
    return [fl.eval_split]
  return [cfg.data.eval_split]


def _check_model_flags(fl, cfg: config_lib.RunConfig) -> None:
  """Model flags (e.g. from the training flagfile) must agree with the run's config.json, which
  decides the model: a differing one is an error, never silently ignored."""
  given = {"model": fl.model, **tfrec_flags.model_kwargs(fl)}
  if not fl["max_seq_len"].using_default_value:
    given["max_seq_len"] = fl.max_seq_len
  have = {"model": cfg.model.name, "max_seq_len": cfg.data.max_seq_len, **cfg.model.kwargs}
  diff = [f"--{k}={v} (the run has {have.get(k, 'the model default')})"
          for k, v in given.items() if v is not None and have.get(k) != v]
  if diff:
    raise ValueError(f"{fl.run_dir} holds a {cfg.model.name} model whose config.json decides "
                     f"the model; these flags disagree with it: {'; '.join(diff)}")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fl = FLAGS
  if not fl.run_dir:
    sys.exit("tfrec.evaluate: missing --run_dir (the run directory written by tfrec.train; "
             "or pass the training --flagfile)")
  try:
    run = load_run(fl.run_dir, fl.checkpoint, data_dir=fl.data_dir)
    _check_model_flags(fl, run.cfg)
    splits = _splits(fl, run.cfg)
    for ext, template in (("json", fl.output_json), ("md", fl.output_md)):
      if len(splits) > 1 and template and "{split}" not in template:
        raise ValueError(f"--output_{ext}={template} is one file for {len(splits)} splits: "
                         "put {split} in it")
    for split in splits:
      result = evaluate_split(run, split, protocol=fl.protocol,
                              gauc_reduction=fl.gauc_reduction, pool=fl.negative_pool,
                              seed=fl.eval_seed, max_examples=fl.max_examples,
                              batch_size=fl.batch_size)
      paths = [output_path(t, fl.run_dir, split, fl.checkpoint, fl.protocol, fl.gauc_reduction,
                           ext) for t, ext in ((fl.output_json, "json"), (fl.output_md, "md"))]
      write_result(result, *paths)
      print(to_markdown(result))
      print(f"tfrec.evaluate: wrote {paths[0]} and {paths[1]}", flush=True)
  except (FileNotFoundError, ValueError, tf.errors.OpError) as e:
    sys.exit(f"tfrec.evaluate: {e}")


def run() -> None:
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
