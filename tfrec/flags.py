"""The one place where tfrec's command-line flags are defined (`define_flags`), and their
conversion into a frozen `RunConfig` (`run_config`). `python -m tfrec.train --helpfull` lists
them; flagfiles in `configs/` set them (`--flagfile` nests; later flags win).

Model flags default to None, meaning "the model's own default"; a model flag the chosen model
does not take is an error, so a misspelt or misplaced option is never silently ignored.
"""

from __future__ import annotations

from absl import flags

from tfrec import config as config_lib

FLAGS = flags.FLAGS

_MODEL_INT = ("dim", "num_heads", "ff_dim", "num_time_blocks", "queue_size")
_MODEL_FLOAT = ("dropout", "momentum", "temperature")
_MODEL_LIST = ("item_features", "domains")
_MODEL_INT_LIST = ("mlp_units", "attention_units")
MODEL_FLAGS = _MODEL_INT + _MODEL_FLOAT + _MODEL_LIST + _MODEL_INT_LIST + ("use_time_blocks",
                                                                          "normalize")


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
  """Defines every flag of train / evaluate / export in `fv` (idempotent)."""
  if "data_dir" in fv:  # a tfrec-only name: a clash on a shared name (model) fails loudly
    return
  # Data.
  flags.DEFINE_string("data_dir", None, "Dataset directory in the tfrec data contract "
                      "(python -m tfrec.datasets.synthetic --out DIR, or tfrec.datasets.movielens).", flag_values=fv)
  flags.DEFINE_string("train_split", "train", "Training split of the ranking records.", flag_values=fv)
  flags.DEFINE_string("eval_split", "test", "Validation/evaluation split.", flag_values=fv)
  flags.DEFINE_integer("max_seq_len", 50, "History length per domain (newest kept, padded).", flag_values=fv)
  flags.DEFINE_integer("shuffle_buffer", 10_000, "Training shuffle buffer in records (0: off).", flag_values=fv)
  flags.DEFINE_enum("on_bad_record", "raise", ["raise", "skip"],
                    "A record that breaks the data contract stops the run (raise, naming file, "
                    "record and field) or is dropped and counted (skip).", flag_values=fv)
  flags.DEFINE_bool("verify_checksums", True, "Hash shards against their manifests first.", flag_values=fv)
  # Model.
  flags.DEFINE_string("model", None, "Registered model name (tfrec.models.registry), e.g. "
                      "youtubenet, din, bst, cross_bst, semi, ccl.", flag_values=fv)
  flags.DEFINE_integer("dim", None, "Item/sequence representation width (SEMI A.1: 128).", flag_values=fv)
  flags.DEFINE_list("item_features", None, "Item encoder inputs among id,category,visual "
                    "(default: all the dataset has).", flag_values=fv)
  flags.DEFINE_list("domains", None, "Histories the model reads: source,target (default: the "
                    "model's own).", flag_values=fv)
  flags.DEFINE_list("mlp_units", None, "Hidden widths of the output MLP (SEMI: 128).", flag_values=fv)
  flags.DEFINE_float("dropout", None, "Dropout rate (SEMI A.1: 0.1).", flag_values=fv)
  flags.DEFINE_integer("num_heads", None, "Attention heads (SEMI A.1: 8).", flag_values=fv)
  flags.DEFINE_integer("ff_dim", None, "Feed-forward width of attention blocks (SEMI: 128).", flag_values=fv)
  flags.DEFINE_list("attention_units", None, "DIN activation-unit widths (DIN: 80,40).", flag_values=fv)
  flags.DEFINE_bool("use_time_blocks", None, "Add 1-hour time-block embeddings (SEMI §3.2.3).", flag_values=fv)
  flags.DEFINE_integer("num_time_blocks", None, "Time blocks, the last one 'older' (168).", flag_values=fv)
  flags.DEFINE_integer("queue_size", None, "CCL: keys per dictionary K (SEMI A.1: 40960).",
                       flag_values=fv)
  flags.DEFINE_float("momentum", None, "CCL: key-encoder momentum m, eq. 9 (SEMI A.1: 0.999).",
                     flag_values=fv)
  flags.DEFINE_float("temperature", None, "CCL: InfoNCE temperature tau, eq. 5-6 (SEMI A.1: "
                     "0.7).", flag_values=fv)
  flags.DEFINE_bool("normalize", None, "CCL: L2-normalise queries and keys (MoCo; not in the "
                    "paper's eq. 5-6).", flag_values=fv)
  # Training.
  flags.DEFINE_string("run_dir", None, "Run directory: checkpoints, logs, resolved flags.", flag_values=fv)
  flags.DEFINE_integer("batch_size", 1024, "Global batch size.", flag_values=fv)
  flags.DEFINE_integer("epochs", 1, "Epochs.", flag_values=fv)
  flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass).", flag_values=fv)
  flags.DEFINE_integer("validation_steps", None, "Validation steps per epoch (default: the "
                       "whole eval split; 0: no validation).", flag_values=fv)
  flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (SEMI A.1: 1e-3).", flag_values=fv)
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
  flags.DEFINE_integer("early_stopping_patience", 0, "Epochs without val AUC gain (0: off).", flag_values=fv)
  flags.DEFINE_integer("log_every_steps", 50, "TensorBoard scalar period in steps.", flag_values=fv)
  flags.DEFINE_string("profile_batch", "", "TensorBoard profiler batches: N or N,M ('' off).", flag_values=fv)
  flags.DEFINE_string("init_from", "", "Run directory or checkpoint to initialise weights from.", flag_values=fv)
  flags.DEFINE_list("init_layers", [], "With --init_from: only these layers (attribute names, "
                    "e.g. target_encoder,source_encoder); default: every layer the checkpoint "
                    "holds.", flag_values=fv)
  flags.DEFINE_string("export_dir", "", "Export a SavedModel here after training.", flag_values=fv)
  flags.DEFINE_string("checkpoint", "best", "evaluate/export: weights of --run_dir to use: best "
                      "(highest validation AUC), final, or a checkpoint path prefix.",
                      flag_values=fv)
  flags.DEFINE_bool("overwrite", False, "train: delete --run_dir first if it exists; export: "
                    "replace a non-empty --export_dir.",
                    flag_values=fv)
  flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar, 2 one line per epoch.", flag_values=fv)


def model_kwargs(fl=FLAGS) -> dict:
  """The model flags the user set (None = not set), converted to their types."""
  kwargs = {}
  for name in _MODEL_INT + _MODEL_FLOAT + ("use_time_blocks", "normalize"):  # scalars
    if fl[name].value is not None:
      kwargs[name] = fl[name].value
  for name in _MODEL_LIST:
    if fl[name].value is not None:
      kwargs[name] = [x.strip() for x in fl[name].value if x.strip()]
  for name in _MODEL_INT_LIST:
    if fl[name].value is not None:
      kwargs[name] = [int(x) for x in fl[name].value if x.strip()]
  return kwargs


def run_config(fl=FLAGS, need_run_dir: bool = True) -> config_lib.RunConfig:
  """Resolves the flags into a frozen `RunConfig` (raises naming a missing flag)."""
  missing = [n for n in ("data_dir", "model") if not fl[n].value]
  if need_run_dir and not fl.run_dir:
    missing.append("run_dir")
  if missing:
    raise ValueError("missing flags: " + ", ".join("--" + m for m in missing) +
                     " (set them or pass --flagfile=configs/...)")
  data = config_lib.DataConfig(
      data_dir=fl.data_dir, train_split=fl.train_split, eval_split=fl.eval_split,
      max_seq_len=fl.max_seq_len, shuffle_buffer=fl.shuffle_buffer,
      on_bad_record=fl.on_bad_record, verify_checksums=fl.verify_checksums)
  model = config_lib.ModelConfig(name=fl.model, kwargs=model_kwargs(fl))
  train = config_lib.TrainConfig(
      run_dir=fl.run_dir or "", batch_size=fl.batch_size, epochs=fl.epochs,
      steps_per_epoch=fl.steps_per_epoch, validation_steps=fl.validation_steps,
      learning_rate=fl.learning_rate, seed=fl.seed, deterministic=fl.deterministic,
      strategy=fl.strategy, cpu_replicas=fl.cpu_replicas, precision=fl.precision,
      jit_compile=fl.jit_compile, backup_every_steps=fl.backup_every_steps,
      early_stopping_patience=fl.early_stopping_patience, log_every_steps=fl.log_every_steps,
      profile_batch=fl.profile_batch, init_from=fl.init_from,
      init_layers=",".join(x.strip() for x in fl.init_layers if x.strip()),
      export_dir=fl.export_dir,
      verbose=fl.verbose)
  return config_lib.RunConfig(data=data, model=model, train=train)
