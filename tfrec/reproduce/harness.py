"""The machinery every paper's reproduction shares: choose each row's learning rate on the
validation split, train each (row, seed) once, evaluate it with the paper's protocol, cache
both under a key of everything that decides the result, and aggregate over seeds.

A row is one line of a paper's table: a registered model, its flagfile, extra flags, and
optionally a pre-training run it initialises from (`Pretrain`). Every run goes through the same
code paths a user runs (`tfrec.flags` -> `RunConfig` -> `train.train` -> `evaluate`), in this
process, one after the other.

Model selection (SEMI A.2: every baseline at its best setting), on the `valid` split only:
  epochs          each run validates every epoch on `cfg.data.valid_split` and stops early on
                  the model's monitor (val AUC); the epoch with the best validation AUC
                  (`checkpoints/best`) is the one evaluated (`TrainResult.best` is recorded).
  learning rate   seed 0 of a row trains once per rate of `Settings.lr_grid`; the rate with the
                  best validation AUC is used for every seed (seed 0's run at that rate is seed
                  0's run). Pre-training runs (CCL) keep their flagfile's rate: their only
                  monitor is their own training loss, which says nothing about the ranking rows
                  they initialise, and choosing it on the rows' validation AUC would multiply
                  the grid.
  A run that would validate on a reported split (a name starting with "test") is refused.

Caching. A run directory is `<work_dir>/<row>/lr<rate>/seed<k>` (pre-training:
`<work_dir>/pretrain/<name>/seed<k>`). Its `reproduce_train.json` holds the TRAIN KEY: sha256 of
the fully resolved `RunConfig` as JSON (data, model with its arguments, every training option
except run_dir, verbose and export_dir), the pre-training run's train key in place of the
`init_from` path, and a fingerprint of the data the run reads (dataset.json less the raw files'
location, the item store's manifest and the manifests of its splits). `reproduce.json` holds
the EVAL KEY: the train key plus the evaluation settings (split and its manifest, protocol,
max_eval_examples, eval seed, checkpoint). A finished run whose train key differs (a changed
flag, flagfile, dataset, or pre-training run) is deleted and trained again; an evaluation whose
eval key differs is redone.
An interrupted run restarts from scratch. So a re-run of an unchanged reproduction only
rewrites the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import flags as absl_flags
from absl import logging
import numpy as np
import tf_keras as keras

from tfrec import callbacks as callbacks_lib
from tfrec import config as config_lib
from tfrec import evaluation as evaluate_lib
from tfrec import flags as tfrec_flags
from tfrec import runs
from tfrec import train as train_lib
from tfrec.models import registry
from tfrec.reproduce import report
from tfrec.reproduce.summaries import (  # noqa: F401  (re-exported: harness.values, ...)
    NUM_ACTIVITY_GROUPS, activity_groups, group_labels, quantile_edges, save_arrays,
    summarize, values)

RESULT_FILE = "reproduce.json"
TRAIN_FILE = "reproduce_train.json"
ARRAYS_FILE = "reproduce_arrays.npz"
# Bumped when what a cached run holds changes (e.g. the arrays gained user_ids): every key
# changes, so every run is redone.
KEY_VERSION = 2
# The epoch with the best validation AUC on the valid split (early stopping picks the epochs).
EVAL_CHECKPOINT = "best"
DEFAULT_SEEDS = 5
DEFAULT_LR_GRID = (3e-4, 1e-3, 3e-3)


@dataclasses.dataclass(frozen=True)
class Pretrain:
  """A pre-training run (e.g. CCL) that rows initialise from: a model, its flagfile and flags."""

  name: str
  flagfile: str
  flags: Tuple[str, ...] = ()
  prepare: Optional[Callable[[str], None]] = None  # data_dir -> None (e.g. select a split)


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a table: `flagfile` (+ `flags`), initialised from `pretrain` when given."""

  name: str
  flagfile: str
  flags: Tuple[str, ...] = ()
  pretrain: Optional[Pretrain] = None

  @property
  def slug(self) -> str:
    return slugify(self.name)


def slugify(name: str) -> str:
  keep = [c.lower() if c.isalnum() else "_" for c in name]
  return "_".join(p for p in "".join(keep).split("_") if p)


def lr_name(lr: float) -> str:
  return f"{lr:g}"


@dataclasses.dataclass
class Settings:
  """What one reproduction run uses.

  Attributes:
    data_dir: the dataset (the tfrec data contract).
    work_dir: run directories go under it (`<work_dir>/<row>/lr<rate>/seed<k>`).
    seeds: seeds 0..seeds-1 per row.
    scale_flagfile: flags applied after each row's own flagfile ("" = the rows' paper sizes).
    pretrain_flagfile: the same for pre-training runs.
    protocol: the sampled-ranking protocol of the paper (tfrec.metrics.PROTOCOLS).
    eval_split: the split results are reported on.
    extra_flags: flags appended to every ranking row's (e.g. fewer epochs on a larger dataset).
    max_eval_examples: evaluate all examples of users sampled with `eval_seed`, at most N
      (0: the whole split; `tfrec.evaluation.sample_users`).
    eval_seed: the evaluation seed of every run (sampled negatives, sampled users): every
      (row, seed) is evaluated on the same examples against the same negatives, so rows pair.
    lr_grid: learning rates tried on seed 0 of each row (empty: the flagfile's rate).
    topk_ks: K of the top-K impression metrics (THACIL §4.4; empty: none).
    gauc_reduction: how GAUC averages the users' AUCs (`tfrec.metrics.gauc`): "samples"
      (weighted by each user's examples, SEMI's and THACIL's) or "mean" (ADAPT eq. 12).
    negative_pool: where sampled negatives come from (`tfrec.evaluation.sampled.POOLS`;
      "auto": the cold target items for a split named *cold*, else the warm ones).
    retrieval_ks: K of the "full" retrieval protocol (retrieval rows; a sampled protocol has
      its own K).

  Retrieval rows (models on `matching` records, `tfrec.models.retrieval`) are evaluated by
  `tfrec.evaluation.retrieval` on the same split with `protocol` (a sampled protocol or
  "full"); their arrays hold per example the user, the positive's rank and `cold_user`.
  """

  data_dir: str
  work_dir: str
  seeds: int = DEFAULT_SEEDS
  scale_flagfile: str = ""
  pretrain_flagfile: str = ""
  protocol: str = "semi"
  eval_split: str = "test"
  extra_flags: Tuple[str, ...] = ()  # appended to every ranking row (after the overlay)
  max_eval_examples: int = 0  # 0: the whole split
  eval_seed: int = 0
  lr_grid: Tuple[float, ...] = DEFAULT_LR_GRID
  topk_ks: Tuple[int, ...] = ()
  gauc_reduction: str = "samples"
  negative_pool: str = "auto"
  retrieval_ks: Tuple[int, ...] = (10, 50)


def parse_config(argv: Sequence[str]) -> config_lib.RunConfig:
  """Flag arguments (flagfiles included) -> `RunConfig`, through `tfrec.flags` as the CLI."""
  fv = absl_flags.FlagValues()
  tfrec_flags.define_flags(fv)
  fv(["reproduce"] + list(argv))
  return tfrec_flags.run_config(fv)


# ------------------------------------------------------------------ keys


def _sha256(obj: Any) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(path: str) -> Optional[str]:
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _dataset_digest(path: str) -> Optional[str]:
  """sha256 of `dataset.json` as canonical JSON without `extra.raw`: where and in which format
  the raw files were found (an absolute path, the GroupLens archive or a mirror's atomic files)
  is provenance, not what the conversion made (the manifests' digests say that), so the same
  dataset converted on another machine, in another directory or from another mirror keeps its
  runs' keys. None when the file is missing."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    info = json.load(f)
  extra = info.get("extra")
  if isinstance(extra, dict) and "raw" in extra:
    info = {**info, "extra": {k: v for k, v in extra.items() if k != "raw"}}
  return _sha256(info)


def data_fingerprint(data_dir: str, kind: str, splits: Sequence[str]) -> Dict[str, Any]:
  """Digests of what identifies the data a run reads: dataset.json, the item store's manifest
  and the manifests (shard sizes and sha256) of `splits` of `kind` (None: missing)."""
  from tfrec.data import tfrecord_io
  from tfrec.data.item_store import STORE_MANIFEST
  out = {"dataset.json": _dataset_digest(os.path.join(data_dir, "dataset.json")),
         STORE_MANIFEST: _file_digest(os.path.join(data_dir, STORE_MANIFEST))}
  for split in sorted(set(splits)):
    out[f"{kind}/{split}"] = _file_digest(tfrecord_io.manifest_path(data_dir, kind, split))
  return out


def validates(cfg: config_lib.RunConfig) -> bool:
  """Whether training validates (and so chooses epochs and the best checkpoint) on
  `cfg.data.valid_split`, as `train.train` decides it."""
  return cfg.train.validation_steps != 0 and registry.get(cfg.model.name).cls.VALIDATES


# TrainConfig fields added after runs were cached, with their defaults: at the default a
# field is left out of the key, so every earlier key (and cached run) stays valid.
ADDED_TRAIN_FIELDS = {"clip_norm": 0.0, "weight_decay": 0.0, "lr_decay": "constant",
                      "valid_retrieval": ""}
ADDED_DATA_FIELDS = {"source_share": 1.0}


def key_material(cfg: config_lib.RunConfig, init_key: str = "") -> Dict[str, Any]:
  """Everything that decides a trained run's weights (module docstring), as JSON."""
  conf = cfg.to_json()
  for name in ("run_dir", "verbose", "export_dir"):
    conf["train"].pop(name, None)
  for name, default in ADDED_TRAIN_FIELDS.items():  # keys of runs cached before they existed.
    if conf["train"].get(name) == default:
      conf["train"].pop(name)
  for name, default in ADDED_DATA_FIELDS.items():  # (the same)
    if conf["data"].get(name) == default:
      conf["data"].pop(name)
  if cfg.train.init_from:
    if not init_key:
      raise ValueError(f"{cfg.train.run_dir}: --init_from={cfg.train.init_from} without the "
                       "pre-training run's key")
    conf["train"]["init_from"] = {"train_key": init_key}
  kind = runs.record_kind(cfg)
  splits = [cfg.data.train_split] + ([cfg.data.valid_split] if validates(cfg) else [])
  return {"version": KEY_VERSION, "config": conf,
          "data": data_fingerprint(cfg.data.data_dir, kind, splits)}


def train_key(cfg: config_lib.RunConfig, init_key: str = "") -> str:
  return _sha256(key_material(cfg, init_key))


# ------------------------------------------------------------------ runs


@contextlib.contextmanager
def run_lock(run_dir: str, what: str) -> Iterator[None]:
  """An exclusive lock on `<run_dir>.<what>.lock` (POSIX `flock`, held until the block ends or
  the process dies): two reproduction processes sharing a work directory never train or
  evaluate the same run at once; the second waits, then finds it cached."""
  with _flock(run_dir, what, wait=True):
    yield


@contextlib.contextmanager
def try_run_lock(run_dir: str, what: str) -> Iterator[bool]:
  """`run_lock` without waiting: yields True holding the lock, or False (nothing held) when
  another process or open file holds it now. Taking it is the claim: of two workers that both
  saw a task free, exactly one gets it."""
  with _flock(run_dir, what, wait=False) as held:
    yield held


@contextlib.contextmanager
def _flock(run_dir: str, what: str, wait: bool) -> Iterator[bool]:
  os.makedirs(os.path.dirname(os.path.abspath(run_dir)), exist_ok=True)
  with open(_lock_path(run_dir, what), "a") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _lock_path(run_dir: str, what: str) -> str:
  return f"{run_dir.rstrip(os.sep)}.{what}.lock"


def is_locked(run_dir: str, what: str) -> bool:
  """Whether another process (or another open of the file here) holds `run_lock(run_dir,
  what)` now."""
  path = _lock_path(run_dir, what)
  if not os.path.exists(path):
    return False
  with open(path, "a") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      return True
    fcntl.flock(f, fcntl.LOCK_UN)
  return False


class Runner:
  """Chooses learning rates, trains and evaluates rows seed by seed, caching each (row, seed).

  Several processes may share one work directory (`python -m tfrec.reproduce --workers=N`):
  each trains and evaluates a run under `run_lock`, and with `worker` = (index, count > 1)
  `run_all` takes the first task no other process holds and whose learning rate is known (work
  stealing), so N processes on N cores train N runs at a time and every one ends with the same
  cached results.
  """

  POLL_SECONDS = 5.0  # how often a worker with nothing ready looks again

  def __init__(self, settings: Settings, worker: Tuple[int, int] = (0, 1)):
    index, count = worker
    if not 0 <= index < count:
      raise ValueError(f"worker index {index} outside 0..{count - 1}")
    self.s = settings
    self.worker = (int(index), int(count))
    self.started = time.time()
    self.timings: Dict[str, float] = {}  # runs trained since `started`, here or by a worker
    self._lr: Dict[str, Tuple[float, Dict[str, Optional[float]]]] = {}

  # -- training

  def _argv(self, seed: int, flagfile: str, extra: Sequence[str], scale: str,
            run_dir: str) -> List[str]:
    argv = [f"--flagfile={flagfile}"] + ([f"--flagfile={scale}"] if scale else [])
    return argv + list(extra) + [f"--data_dir={self.s.data_dir}", f"--seed={seed}",
                                 f"--run_dir={run_dir}", "--export_dir=", "--verbose=0"]

  def _train(self, argv: Sequence[str], label: str, init_key: str = "",
             allow_divergence: bool = False) -> Dict[str, Any]:
    """Trains the run `argv` describes unless a finished run with the same train key is there;
    returns its `TRAIN_FILE` record: "key", "best" (`TrainResult.best`), "epochs_run",
    "history", "diverged"."""
    cfg = parse_config(argv)
    valid = cfg.data.valid_split
    if validates(cfg) and (config_lib.is_reported_split(valid) or valid == self.s.eval_split):
      raise ValueError(f"{label}: validates on {valid!r}, a reported split; a reproduction "
                       "chooses epochs, checkpoints and learning rates on 'valid' only")
    with run_lock(cfg.train.run_dir, "train"):
      return self._train_locked(cfg, label, init_key, allow_divergence)

  def _train_locked(self, cfg: config_lib.RunConfig, label: str, init_key: str,
                    allow_divergence: bool) -> Dict[str, Any]:
    run_dir = cfg.train.run_dir
    key = train_key(cfg, init_key)
    path = os.path.join(run_dir, TRAIN_FILE)
    final = config_lib.run_paths(run_dir)["final"] + ".index"
    if os.path.exists(path):
      with open(path) as f:
        record = json.load(f)
      if record.get("key") == key and (record.get("diverged") or os.path.exists(final)):
        if record.get("finished", 0.0) >= self.started:  # another worker's, this invocation
          self.timings[label] = record.get("seconds", 0.0)
        return record
      logging.info("%s: the cached run's configuration differs; training again", label)
    if os.path.isdir(run_dir):  # changed, or interrupted: start again from scratch
      shutil.rmtree(run_dir)
    start = time.time()
    keras.backend.clear_session()
    record: Dict[str, Any] = {"key": key, "label": label, "diverged": False}
    try:
      result = train_lib.train(cfg)
    except callbacks_lib.TrainingDiverged as e:
      if not allow_divergence:
        raise
      logging.warning("%s diverged: %s", label, e)
      record.update(diverged=True, best={}, history={}, epochs_run=0)
    else:
      history = {k: [float(x) for x in v] for k, v in result.history.items()}
      best = dict(result.best)
      record.update(best=best, history=history,
                    epochs_run=max((len(v) for v in history.values()), default=0))
    record["finished"] = time.time()
    self.timings[label] = record["seconds"] = record["finished"] - start
    logging.info("trained %s in %.0f s", label, self.timings[label])
    report.atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))
    return record

  def pretrain_dir(self, p: Pretrain, seed: int) -> str:
    return os.path.join(self.s.work_dir, "pretrain", slugify(p.name), f"seed{seed}")

  def pretrain(self, p: Pretrain, seed: int) -> Tuple[str, str]:
    """(run directory, train key) of a pre-training run, trained unless cached."""
    if p.prepare is not None:
      p.prepare(self.s.data_dir)
    record = self._train(self._argv(seed, p.flagfile, p.flags, self.s.pretrain_flagfile,
                                    self.pretrain_dir(p, seed)), f"{p.name} seed {seed}")
    return self.pretrain_dir(p, seed), record["key"]

  def row_dir(self, row: Row, seed: int, lr: Optional[float] = None) -> str:
    lr = self.learning_rate(row) if lr is None else lr
    return os.path.join(self.s.work_dir, row.slug, f"lr{lr_name(lr)}", f"seed{seed}")

  def _row_argv(self, row: Row, seed: int, lr: float) -> Tuple[List[str], str]:
    extra, init_key = list(row.flags), ""
    if row.pretrain is not None:
      pre_dir, init_key = self.pretrain(row.pretrain, seed)
      extra.append(f"--init_from={pre_dir}")
    extra += list(self.s.extra_flags) + [f"--learning_rate={lr!r}"]
    return (self._argv(seed, row.flagfile, extra, self.s.scale_flagfile,
                       self.row_dir(row, seed, lr)), init_key)

  def _train_row(self, row: Row, seed: int, lr: float, allow_divergence: bool = False
                 ) -> Dict[str, Any]:
    argv, init_key = self._row_argv(row, seed, lr)
    return self._train(argv, f"{row.name} lr {lr_name(lr)} seed {seed}", init_key,
                       allow_divergence=allow_divergence)

  def learning_rate(self, row: Row) -> float:
    return self.choose_lr(row)[0]

  def choose_lr(self, row: Row) -> Tuple[float, Dict[str, Optional[float]]]:
    """(the rate of `lr_grid` whose seed-0 run has the best validation value, rate name ->
    that value (None: diverged)). Trains seed 0 at each rate unless cached. An empty grid:
    the flagfile's rate, unscored."""
    if row.name in self._lr:
      return self._lr[row.name]
    if not self.s.lr_grid:
      argv = self._argv(0, row.flagfile, list(row.flags) + list(self.s.extra_flags),
                        self.s.scale_flagfile, "-")
      self._lr[row.name] = (parse_config(argv).train.learning_rate, {})
      return self._lr[row.name]
    scores: Dict[str, Optional[float]] = {}
    best_lr, best_value, mode = None, None, "max"
    for lr in self.s.lr_grid:
      record = self._train_row(row, 0, lr, allow_divergence=len(self.s.lr_grid) > 1)
      best = record.get("best") or {}
      if record.get("diverged"):
        scores[lr_name(lr)] = None
        continue
      if "value" not in best:
        raise ValueError(f"{row.name}: seed 0 at lr {lr_name(lr)} recorded no validation "
                         "value (no validation split?); the learning-rate grid needs one")
      mode = best.get("mode", "max")
      value = float(best["value"])
      scores[lr_name(lr)] = value
      if not math.isfinite(value):
        continue
      if best_value is None or (value > best_value if mode == "max" else value < best_value):
        best_lr, best_value = lr, value  # ties: the first rate of the grid
    if best_lr is None:
      raise ValueError(f"{row.name}: every learning rate of {self.s.lr_grid} diverged")
    self._lr[row.name] = (best_lr, scores)
    logging.info("%s: learning rate %s (validation %s)", row.name, lr_name(best_lr), scores)
    return self._lr[row.name]

  # -- evaluation

  def eval_settings(self, kind: str = "ranking") -> Dict[str, Any]:
    """What decides an evaluation of a run on `kind` records (the eval key's material)."""
    from tfrec.data import tfrecord_io
    out = {"split": self.s.eval_split, "protocol": self.s.protocol,
           "max_eval_examples": int(self.s.max_eval_examples), "eval_seed": self.s.eval_seed,
           "checkpoint": EVAL_CHECKPOINT,
           "split_manifest": _file_digest(tfrecord_io.manifest_path(
               self.s.data_dir, kind, self.s.eval_split))}
    # Absent at their defaults: keys of runs cached before them stay valid.
    if kind != "ranking":
      out["kind"] = kind
      out["retrieval_ks"] = [int(k) for k in self.s.retrieval_ks]
    if self.s.negative_pool != "auto":
      out["negative_pool"] = self.s.negative_pool
    if self.s.topk_ks:  # absent when unused: keys of runs cached before it stay valid
      out["topk_ks"] = [int(k) for k in self.s.topk_ks]
    if self.s.gauc_reduction != "samples":  # (the same)
      out["gauc_reduction"] = self.s.gauc_reduction
    return out

  def run(self, row: Row, seed: int) -> Dict[str, Any]:
    """Trains (unless cached) and evaluates (unless cached) one row with one seed, at the
    row's chosen learning rate."""
    lr, grid = self.choose_lr(row)
    record = self._train_row(row, seed, lr)
    run_dir = self.row_dir(row, seed, lr)
    with run_lock(run_dir, "eval"):
      return self._evaluate_cached(row, seed, lr, grid, record, run_dir)

  def _evaluate_cached(self, row: Row, seed: int, lr: float,
                       grid: Dict[str, Optional[float]], record: Dict[str, Any],
                       run_dir: str) -> Dict[str, Any]:
    kind = registry.record_kind(config_lib.RunConfig.load(run_dir).model.name)
    key = _sha256({"train_key": record["key"], "eval": self.eval_settings(kind)})
    cached = os.path.join(run_dir, RESULT_FILE)
    if os.path.exists(cached):
      with open(cached) as f:
        summary = json.load(f)
      if summary.get("key") == key and os.path.exists(os.path.join(run_dir, ARRAYS_FILE)):
        return summary
    start = time.time()
    result = self._evaluate(run_dir, kind)
    summary = summarize(result, row, seed)
    cfg = config_lib.RunConfig.load(run_dir)
    summary.update(key=key, train_key=record["key"], eval_seconds=time.time() - start,
                   train_seconds=record.get("seconds"), lr=lr, lr_grid=grid,
                   best=record.get("best") or {}, epochs_run=record.get("epochs_run"),
                   max_epochs=cfg.train.epochs,
                   patience=cfg.train.early_stopping_patience,
                   valid_split=cfg.data.valid_split if validates(cfg) else None,
                   eval_seed=self.s.eval_seed)
    report.atomic_write_text(cached, json.dumps(summary, indent=1, sort_keys=True))
    return summary

  def _evaluate(self, run_dir: str, kind: str = "ranking") -> Dict[str, Any]:
    """Evaluates a run (`EVAL_CHECKPOINT`); keeps the per-example arrays (`ARRAYS_FILE`)."""
    keras.backend.clear_session()
    if kind == "matching":
      from tfrec.evaluation import retrieval
      result = retrieval.evaluate_retrieval_run(
          run_dir, self.s.eval_split, self.s.protocol, self.s.retrieval_ks, EVAL_CHECKPOINT,
          self.s.negative_pool, self.s.eval_seed, self.s.max_eval_examples, keep_arrays=True)
      save_arrays(os.path.join(run_dir, ARRAYS_FILE), result["arrays"])
      return result
    loaded = evaluate_lib.load_run(run_dir, EVAL_CHECKPOINT)
    result = evaluate_lib.evaluate_split(loaded, self.s.eval_split, protocol=self.s.protocol,
                                         seed=self.s.eval_seed, keep_arrays=True,
                                         max_examples=self.s.max_eval_examples,
                                         topk_ks=self.s.topk_ks,
                                         gauc_reduction=self.s.gauc_reduction)
    save_arrays(os.path.join(run_dir, ARRAYS_FILE), result["arrays"])
    return result

  def arrays(self, row: Row, seed: int) -> Dict[str, np.ndarray]:
    """The per-example arrays of a (row, seed) (`save_arrays`), run first unless cached."""
    self.run(row, seed)
    with np.load(os.path.join(self.row_dir(row, seed), ARRAYS_FILE)) as f:
      return dict(f)

  def run_all(self, rows: Sequence[Row], own_only: bool = False
              ) -> Dict[str, List[Dict[str, Any]]]:
    """row name -> one summary per seed (seeds outermost, so every row has seed 0 first).

    With `worker` = (i, n > 1) the process first works through the tasks (each row's seed-0
    run at each rate of `lr_grid`, then each (row, seed)) in that order, always taking the first
    one that is ready (no worker holds its run, and for a (row, seed) every rate's seed-0 run of
    the row has finished: `_ready`) and that it claims (`_claim_and_run`: a non-blocking lock,
    so two workers never queue on one run); with nothing ready it polls. Then, unless `own_only` (a
    helper process, which returns {}), it collects every (row, seed) from the cache in order.
    """
    count = self.worker[1]
    tasks: List[Tuple[Row, Optional[float], int]] = []
    if self.s.lr_grid and count > 1:
      tasks += [(row, lr, 0) for row in rows for lr in self.s.lr_grid]
    tasks += [(row, None, seed) for seed in range(self.s.seeds) for row in rows]
    pending = list(tasks) if count > 1 else []
    while pending:
      if not any(self._claim_and_run(task, pending) for task in list(pending)
                 if self._ready(*task)):
        time.sleep(self.POLL_SECONDS)
    if own_only:
      return {}
    out: Dict[str, List[Dict[str, Any]]] = {r.name: [] for r in rows}
    for row, lr, seed in tasks:
      if lr is None:
        logging.info("reproduce: %s, seed %d", row.name, seed)
        out[row.name].append(self.run(row, seed))
    return out


  def _claim_and_run(self, task: Tuple[Row, Optional[float], int], pending: List) -> bool:
    """Runs `task` and removes it from `pending` if this worker claims its run directory
    (a non-blocking lock, so two workers that both found it ready never both wait on it);
    False when another worker holds it."""
    row, lr, seed = task
    run_dir = self.row_dir(row, 0, lr) if lr is not None else self.row_dir(row, seed)
    with try_run_lock(run_dir, "claim") as claimed:
      if not claimed:
        return False
      pending.remove(task)
      index, count = self.worker
      logging.info("reproduce (worker %d of %d): %s, %sseed %d", index, count, row.name,
                   "" if lr is None else f"lr {lr_name(lr)}, ", seed)
      if lr is None:
        self.run(row, seed)
      else:
        self._train_row(row, 0, lr, allow_divergence=len(self.s.lr_grid) > 1)
    return True

  def _ready(self, row: Row, lr: Optional[float], seed: int) -> bool:
    """Whether a worker can start the task now without waiting on another one: its run is not
    held, and a (row, seed)'s rate is chosen (every rate's seed-0 run finished, none held)."""
    if lr is not None:
      return not is_locked(self.row_dir(row, 0, lr), "train")
    if self.s.lr_grid and row.name not in self._lr and not all(
        os.path.exists(os.path.join(self.row_dir(row, 0, rate), TRAIN_FILE))
        and not is_locked(self.row_dir(row, 0, rate), "train") for rate in self.s.lr_grid):
      return False
    run_dir = self.row_dir(row, seed)  # the rate is chosen now: read from the cache
    return not is_locked(run_dir, "train") and not is_locked(run_dir, "eval")
