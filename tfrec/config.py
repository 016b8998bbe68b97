"""Frozen run configuration: what `main` resolves from flags once, and what a run directory keeps.

Library code takes these objects (or plain arguments), never `absl.FLAGS`. A run directory holds
`config.json` (this object) and `flags.txt` (the resolved flags, usable as a `--flagfile`), so
`tfrec.evaluate` and `tfrec.export` rebuild exactly the trained model.

Run directory layout:
  <run_dir>/config.json, flags.txt
  <run_dir>/checkpoints/best*, final*   weights (TF checkpoint format; best by the model's
                                        validation metric, e.g. AUC)
  <run_dir>/backup/                     BackupAndRestore state (deleted when a run completes)
  <run_dir>/logs/train, logs/validation TensorBoard event files
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

CONFIG_FILE = "config.json"
FLAGS_FILE = "flags.txt"
VALID_SPLIT = "valid"
# Splits whose names start with this are what evaluation reports (test, test_cold, ...).
REPORTED_PREFIX = "test"


def is_reported_split(split: str) -> bool:
  """Whether evaluation reports `split` (so nothing may be chosen on it): test, test_cold..."""
  return split.startswith(REPORTED_PREFIX)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the examples come from (a dataset directory in the tfrec data contract).

  Attributes:
    data_dir: dataset directory (dataset.json, items.npz, ranking/...).
    train_split: the split trained on (of the model's record kind).
    valid_split: the split validated on during training (early stopping, the best
      checkpoint); never a reported split unless `TrainConfig.allow_test_validation`.
    max_seq_len: histories are truncated (newest kept) and padded to this length.
    shuffle_buffer: records in the training shuffle buffer (0: no shuffling).
    on_bad_record: "raise" (stop, naming file/record/field) or "skip" (drop and count).
    verify_checksums: hash every shard against its manifest before reading.
    source_share: share of source-domain behaviours kept in the histories of the TRAINING
      split's records (COUPLE Fig. 4: less source-domain data); 1.0 keeps all. Which
      behaviours go is decided per (user, item, time) by a hash (`pipeline.source_keep`), so a
      dropped behaviour is gone from every record and epoch; validation, evaluation and
      serving read everything.
  """

  data_dir: str
  train_split: str = "train"
  valid_split: str = VALID_SPLIT
  max_seq_len: int = 50
  shuffle_buffer: int = 10_000
  on_bad_record: str = "raise"
  verify_checksums: bool = True
  source_share: float = 1.0

  def __post_init__(self):
    if not 0.0 <= self.source_share <= 1.0:
      raise ValueError(f"source_share must be in [0, 1], got {self.source_share}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A registered model name plus the arguments given for it (unset ones: model defaults), and
  the names of arguments given that this model does not take (skipped: `--model_args`)."""

  name: str
  kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
  skipped: Tuple[str, ...] = ()


LR_DECAYS = ("constant", "linear")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train.

  Attributes:
    run_dir: where checkpoints, logs and the resolved config go.
    batch_size: global batch size (split across replicas).
    epochs: passes over the training split.
    steps_per_epoch: None: one pass over the training split (ceil(records / batch)).
    validation_steps: None: the whole eval split each epoch; 0: no validation.
    learning_rate: Adam learning rate (SEMI A.1: 1e-3).
    seed: seeds Python, NumPy, TensorFlow and the shuffle; with `deterministic`, reruns give
      identical weights.
    deterministic: enable TensorFlow op determinism (slower).
    strategy: "default", "one_device", "mirrored" or "multi_worker" (reads TF_CONFIG).
    cpu_replicas: split the CPU into this many logical devices (exercises MirroredStrategy
      without GPUs); 0: leave devices alone.
    precision: "float32", "mixed_float16" or "mixed_bfloat16".
    jit_compile: XLA-compile the train step.
    backup_every_steps: BackupAndRestore period in steps (0: at epoch ends only).
    early_stopping_patience: epochs without a gain of the model's validation metric before
      stopping (0: off).
    log_every_steps: TensorBoard scalar period in steps.
    profile_batch: "" (off), "N" or "N,M": TensorBoard profiler batches.
    init_from: a run directory or checkpoint to initialise weights from (partial allowed).
    init_layers: comma-separated layer names to take from `init_from` ("": every layer the
      checkpoint holds).
    export_dir: write a SavedModel here after training (chief only).
    allow_test_validation: let `DataConfig.valid_split` be a reported split (test...).
    loss_weights: weight per named loss of the model (missing names: 1).
    clip_norm: clip the gradients to this global norm before each update (THACIL's public
      code: 5); 0: no clipping.
    weight_decay: > 0: AdamW with this decoupled weight decay (ADAPT §IV-B: AdamW, 0.01)
      instead of Adam.
    lr_decay: "constant", or "linear": the rate falls linearly from `learning_rate` at step 0
      to 0 at the run's last step (epochs x steps per epoch; M5 §5.1.3).
    valid_retrieval: "" (retrieval models validate their loss), or "<protocol>:<metric>@<K>"
      ("couple:hr@10", "full:hr@20", metric hr or ndcg; a suffix ":N" evaluates at most N
      examples of users sampled with seed 0, the same ones every epoch, for a large valid
      split): each epoch a retrieval model is
      evaluated on the valid split as `tfrec.evaluate` would report it
      (`evaluation.retrieval`, protocol "full" or a sampled one, the default candidate pool),
      logged as val_<metric>@<K>, and that value (higher is better) picks the best checkpoint
      and stops early: the epoch is chosen by the reported metric, not the training loss.
    verbose: Keras progress: 0 silent, 1 progress bar, 2 one line per epoch.
  """

  run_dir: str
  batch_size: int = 1024
  epochs: int = 1
  steps_per_epoch: Optional[int] = None
  validation_steps: Optional[int] = None
  learning_rate: float = 1e-3
  seed: int = 0
  deterministic: bool = False
  strategy: str = "default"
  cpu_replicas: int = 0
  precision: str = "float32"
  jit_compile: bool = False
  backup_every_steps: int = 100
  early_stopping_patience: int = 0
  log_every_steps: int = 50
  profile_batch: str = ""
  init_from: str = ""
  init_layers: str = ""
  export_dir: str = ""
  allow_test_validation: bool = False
  loss_weights: Dict[str, float] = dataclasses.field(default_factory=dict)
  clip_norm: float = 0.0
  weight_decay: float = 0.0
  lr_decay: str = "constant"
  valid_retrieval: str = ""
  verbose: int = 1

  def __post_init__(self):
    if self.lr_decay not in LR_DECAYS:
      raise ValueError(f"lr_decay must be one of {LR_DECAYS}, not {self.lr_decay!r}")
    if self.valid_retrieval:
      parse_valid_retrieval(self.valid_retrieval)


VALID_RETRIEVAL_METRICS = ("hr", "ndcg")


def parse_valid_retrieval(spec: str) -> Tuple[str, str, int, int]:
  """"couple:hr@10" -> ("couple", "hr@10", 10, 0); "full:hr@20:5000" -> (..., 5000): at most
  5,000 examples of users sampled with seed 0 (`TrainConfig.valid_retrieval`; 0: all).

  Raises:
    ValueError: not "<protocol>:<hr|ndcg>@<K>[:<max examples>]" with K >= 1.
  """
  protocol, sep, rest = spec.partition(":")
  metric, _, cap = rest.partition(":")
  name, at, k = metric.partition("@")
  if not (sep and at and protocol and name in VALID_RETRIEVAL_METRICS and k.isdigit()
          and int(k) >= 1 and (cap == "" or cap.isdigit())):
    raise ValueError(f"valid_retrieval={spec!r}: expected <protocol>:<metric>@<K>[:<max "
                     f"examples>], metric one of {VALID_RETRIEVAL_METRICS} (e.g. couple:hr@10, "
                     "full:hr@20:5000)")
  return protocol, metric, int(k), int(cap or 0)


STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  data: DataConfig
  model: ModelConfig
  train: TrainConfig

  def __post_init__(self):
    if self.train.strategy not in STRATEGIES:
      raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.train.strategy!r}")
    if self.train.precision not in PRECISIONS:
      raise ValueError(f"precision must be one of {PRECISIONS}, got {self.train.precision!r}")
    if self.train.batch_size < 1 or self.train.epochs < 1:
      raise ValueError("batch_size and epochs must be >= 1")
    if self.data.on_bad_record not in ("raise", "skip"):
      raise ValueError(f"on_bad_record must be raise or skip, got {self.data.on_bad_record!r}")

  def to_json(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: Dict[str, Any]) -> "RunConfig":
    data, model, train = dict(d["data"]), dict(d["model"]), dict(d["train"])
    if "eval_split" in data:  # written before valid splits existed: it validated on this one
      old = data.pop("eval_split")
      data["valid_split"] = old
      train.setdefault("allow_test_validation", is_reported_split(old))
    model["skipped"] = tuple(model.get("skipped", ()))
    return cls(data=DataConfig(**data), model=ModelConfig(**model), train=TrainConfig(**train))

  def save(self, run_dir: Optional[str] = None) -> str:
    run_dir = run_dir or self.train.run_dir
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, CONFIG_FILE)
    tmp = path + ".incomplete"
    with open(tmp, "w") as f:
      json.dump(self.to_json(), f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path

  @classmethod
  def load(cls, run_dir: str) -> "RunConfig":
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no run configuration (is {run_dir} a tfrec run "
                              "directory written by python -m tfrec.train?)")
    with open(path) as f:
      return cls.from_json(json.load(f))


def run_paths(run_dir: str) -> Dict[str, str]:
  """The fixed sub-paths of a run directory."""
  return {
      "checkpoints": os.path.join(run_dir, "checkpoints"),
      "best": os.path.join(run_dir, "checkpoints", "best"),
      "final": os.path.join(run_dir, "checkpoints", "final"),
      "backup": os.path.join(run_dir, "backup"),
      "logs": os.path.join(run_dir, "logs"),
  }

