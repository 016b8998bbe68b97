"""The one place where tfrec's command-line flags are defined (`define_flags`), and their
conversion into a frozen `RunConfig` (`run_config`). `python -m tfrec.train --helpfull` lists
them; flagfiles in `configs/` set them (`--flagfile` nests; later flags win).

Model hyper-parameters are not flags of their own: `--model_args=name=value,...` (repeatable,
later names win) sets any argument of the chosen model's constructor, typed and checked against
the registry (`tfrec.models.model_args`): an argument only other models take is skipped and
said so; a name no model takes is an error.
"""

from __future__ import annotations

from typing import Dict, Sequence

from absl import flags
from absl import logging

from tfrec import config as config_lib

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
  """Defines every flag of train / evaluate / export in `fv` (idempotent)."""
  if "data_dir" in fv:  # a tfrec-only name: a clash on a shared name (model) fails loudly
    return
  # Data.
  flags.DEFINE_string("data_dir", None, "Dataset directory in the tfrec data contract "
                      "(python -m tfrec.datasets.synthetic --out DIR, or tfrec.datasets.movielens).", flag_values=fv)
  flags.DEFINE_string("train_split", "train", "Training split of the ranking records.", flag_values=fv)
  flags.DEFINE_string("valid_split", config_lib.VALID_SPLIT, "Split validated on during "
                      "training (early stopping, the best checkpoint). A split that evaluation "
                      "reports (test, test_cold, ...) is refused without "
                      "--allow_test_validation.", flag_values=fv)
  flags.DEFINE_bool("allow_test_validation", False, "Let --valid_split name a reported split "
                    "(test...): results are then chosen on what they report; recorded in "
                    "config.json and printed in every evaluation.", flag_values=fv)
  flags.DEFINE_integer("max_seq_len", 50, "History length per domain (newest kept, padded).", flag_values=fv)
  flags.DEFINE_integer("shuffle_buffer", 10_000, "Training shuffle buffer in records (0: off).", flag_values=fv)
  flags.DEFINE_float("source_share", 1.0, "Share of source-domain behaviours kept in the "
                     "training split's histories (COUPLE Fig. 4), each dropped or kept by a hash "
                     "of (user, item, time) in every record and epoch; validation and "
                     "evaluation read everything. 1: all.", lower_bound=0.0, upper_bound=1.0,
                     flag_values=fv)
  flags.DEFINE_enum("on_bad_record", "raise", ["raise", "skip"],
                    "A record that breaks the data contract stops the run (raise, naming file, "
                    "record and field) or is dropped and counted (skip).", flag_values=fv)
  flags.DEFINE_bool("verify_checksums", True, "Hash shards against their manifests first.", flag_values=fv)
  # Model.
  flags.DEFINE_string("model", None, "Registered model name (tfrec.models.registry), e.g. "
                      "youtubenet, din, bst, cross_bst, semi, ccl.", flag_values=fv)
  flags.DEFINE_multi_string("model_args", [], "Arguments of the model's constructor as "
                            "name=value,... (lists in brackets: mlp_units=[128,64]; none for "
                            "None); repeatable, later names win. tfrec.models.model_args.",
                            flag_values=fv)
  # Training.
  flags.DEFINE_string("run_dir", None, "Run directory: checkpoints, logs, resolved flags.", flag_values=fv)
  flags.DEFINE_integer("batch_size", 1024, "Global batch size.", flag_values=fv)
  flags.DEFINE_integer("epochs", 1, "Epochs.", flag_values=fv)
  flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass).", flag_values=fv)
  flags.DEFINE_integer("validation_steps", None, "Validation steps per epoch (default: the "
                       "whole eval split; 0: no validation).", flag_values=fv)
  flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (SEMI A.1: 1e-3).", flag_values=fv)
  flags.DEFINE_float("weight_decay", 0.0, "> 0: AdamW with this decoupled weight decay "
                     "(ADAPT: 0.01) instead of Adam.", flag_values=fv)
  flags.DEFINE_enum("lr_decay", "constant", ["constant", "linear"], "linear: the learning "
                    "rate falls linearly to 0 at the run's last step (M5 §5.1.3).", flag_values=fv)
  flags.DEFINE_string("valid_retrieval", "", "Retrieval models: validate each epoch with "
                     "<protocol>:<metric>@<K> on the valid split (e.g. couple:hr@10, "
                     "full:hr@20) instead of the loss; it picks the best checkpoint and stops "
                     "early. Empty: the validation loss.", flag_values=fv)
  flags.DEFINE_float("clip_norm", 0.0, "Clip gradients to this global norm (THACIL's code: 5); "
                     "0: off.", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seed of Python, NumPy, TensorFlow and the shuffle.", flag_values=fv)
  flags.DEFINE_bool("deterministic", False, "TensorFlow op determinism: reruns give identical "
                    "weights (slower).", flag_values=fv)
  flags.DEFINE_enum("strategy", "default", list(config_lib.STRATEGIES),
                    "tf.distribute strategy; multi_worker reads TF_CONFIG.", flag_values=fv)
  flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into N logical devices (MirroredStrategy "
                       "without GPUs, for tests and CI).", flag_values=fv)
  flags.DEFINE_enum("precision", "float32", list(config_lib.PRECISIONS),
                    "Keras mixed-precision policy.", flag_values=fv)
  flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step.", flag_values=fv)
  flags.DEFINE_integer("backup_every_steps", 100, "BackupAndRestore period in steps (0: epochs).", flag_values=fv)
  flags.DEFINE_integer("early_stopping_patience", 0, "Epochs without a gain of the model's "
                       "validation metric (val_auc for rankers) before stopping (0: off).",
                       flag_values=fv)
  flags.DEFINE_list("loss_weights", [], "Weights of the model's named losses, name=value,... "
                    "(default 1 each; the names are the model's LOSSES).", flag_values=fv)
  flags.DEFINE_integer("log_every_steps", 50, "TensorBoard scalar period in steps.", flag_values=fv)
  flags.DEFINE_string("profile_batch", "", "TensorBoard profiler batches: N or N,M ('' off).", flag_values=fv)
  flags.DEFINE_string("init_from", "", "Run directory or checkpoint to initialise weights from.", flag_values=fv)
  flags.DEFINE_list("init_layers", [], "With --init_from: only these layers (attribute names, "
                    "e.g. target_encoder,source_encoder); default: every layer the checkpoint "
                    "holds.", flag_values=fv)
  flags.DEFINE_string("export_dir", "", "Export a SavedModel here after training: "
                      "the best checkpoint when the run validated, else the final weights (as "
                      "python -m tfrec.export).", flag_values=fv)
  flags.DEFINE_string("checkpoint", "best", "evaluate/export: weights of --run_dir to use: best "
                      "(highest validation AUC), final, or a checkpoint path prefix.",
                      flag_values=fv)
  flags.DEFINE_bool("overwrite", False, "train: delete --run_dir first if it exists; export: "
                    "replace a non-empty --export_dir.",
                    flag_values=fv)
  flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar, 2 one line per epoch.", flag_values=fv)


def model_kwargs(fl=FLAGS) -> dict:
  """The model arguments the user set for `--model`, typed (those it does not take left out)."""
  from tfrec.models import model_args
  return model_args.resolve(fl.model, model_args.parse(fl.model_args))[0]


def loss_weights(values: Sequence[str]) -> Dict[str, float]:
  """["bce=1", "mlm=0.5"] -> {"bce": 1.0, "mlm": 0.5}."""
  out = {}
  for entry in values or ():
    name, sep, value = entry.partition("=")
    try:
      if not sep:
        raise ValueError
      out[name.strip()] = float(value)
    except ValueError:
      raise ValueError(f"--loss_weights: {entry!r} is not name=number") from None
  return out


def run_config(fl=FLAGS, need_run_dir: bool = True) -> config_lib.RunConfig:
  """Resolves the flags into a frozen `RunConfig` (raises naming a missing flag)."""
  missing = [n for n in ("data_dir", "model") if not fl[n].value]
  if need_run_dir and not fl.run_dir:
    missing.append("run_dir")
  if missing:
    raise ValueError("missing flags: " + ", ".join("--" + m for m in missing) +
                     " (set them or pass --flagfile=configs/...)")
  data = config_lib.DataConfig(
      data_dir=fl.data_dir, train_split=fl.train_split, valid_split=fl.valid_split,
      max_seq_len=fl.max_seq_len, shuffle_buffer=fl.shuffle_buffer,
      on_bad_record=fl.on_bad_record, verify_checksums=fl.verify_checksums,
      source_share=fl.source_share)
  from tfrec.models import model_args
  kwargs, skipped = model_args.resolve(fl.model, model_args.parse(fl.model_args))
  if skipped:
    logging.warning("--model_args: %s does not take %s; skipped", fl.model, ", ".join(skipped))
  model = config_lib.ModelConfig(name=fl.model, kwargs=kwargs, skipped=skipped)
  train = config_lib.TrainConfig(
      run_dir=fl.run_dir or "", batch_size=fl.batch_size, epochs=fl.epochs,
      steps_per_epoch=fl.steps_per_epoch, validation_steps=fl.validation_steps,
      learning_rate=fl.learning_rate, seed=fl.seed, deterministic=fl.deterministic,
      strategy=fl.strategy, cpu_replicas=fl.cpu_replicas, precision=fl.precision,
      jit_compile=fl.jit_compile, backup_every_steps=fl.backup_every_steps,
      early_stopping_patience=fl.early_stopping_patience, log_every_steps=fl.log_every_steps,
      profile_batch=fl.profile_batch, init_from=fl.init_from,
      init_layers=",".join(x.strip() for x in fl.init_layers if x.strip()),
      export_dir=fl.export_dir, allow_test_validation=fl.allow_test_validation,
      loss_weights=loss_weights(fl.loss_weights), clip_norm=fl.clip_norm,
      weight_decay=fl.weight_decay, lr_decay=fl.lr_decay,
      valid_retrieval=fl.valid_retrieval, verbose=fl.verbose)
  return config_lib.RunConfig(data=data, model=model, train=train)
