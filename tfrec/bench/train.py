"""Training throughput and model FLOP utilisation at the papers' sizes, optionally vs DeepCTR.

    python -m tfrec.bench train [--model=cross_bst] [--vs=deepctr] [--steps=20] [--warmup=3]
        [--batch=1024] [--seq=50] [--dim=128] [--heads=8] [--jit_compile] [--precision=float32]
        [--dropout=R] [--model_args=name=value,...]

Sizes default to SEMI A.1: batch 1024, histories of 50 per domain (50+50 merged for Cross-BST),
d = 128, 8 heads, feed-forward 128, an in-memory item store of 20K items with 128-d visual
vectors. Features are random in-memory tensors (full histories, timestamps increasing, random
labels) repeated by `tf.data`, so the input pipeline is not measured (`bench input` measures
it). Each model is compiled with Adam(1e-3) and binary cross-entropy and trained with `fit`.
SEMI as the paper configures it (frozen pre-extracted item vectors, dropout after the final MLP
only: configs/semi/paper_inputs.flags) is
`--model=semi --model_args=item_features=[pre_extracted],attention_dropout=0`.

Measured in one process, so that every figure is a ratio taken under the same load:
  * each model's step time, after `--warmup` steps (tracing) are excluded. The timed steps are
    taken in turns, one step per model per turn (a `fit` of one step, timed from the batch's
    begin callback to its end callback), the order reversed every other turn, so a change in
    the machine's load hits every model alike. Figures use the median step time;
    examples/s = batch / median step;
  * the model's matmul FLOPs per train step, counted from its traced graph (`flops.py`:
    matmuls, einsums and convolutions of forward, backward and update; elementwise ops not
    counted), and FLOP/s = FLOPs per step / median step time;
  * the matmul FLOP/s of the machine: a 2048 x 2048 float32 matmul, timed once per turn;
  * MFU = the model's FLOP/s / the matmul FLOP/s;
  * model / model ratios: the median over turns of the ratio of the two steps of that turn,
    with its quartiles.

`--vs=deepctr` also trains DeepCTR's BST (`deepctr==0.9.4`, the `bench` extra:
`pip install -e ".[bench]"`) on the same tensors in its one-domain form (target history of 50,
candidate item, embedding 128 = 8 heads x 16, one transformer block), and our one-domain `bst`
beside it, and prints our bst / DeepCTR. DeepCTR 0.9.4 imports `tensorflow.keras`, which is
tf-keras once `import tfrec` has set `TF_USE_LEGACY_KERAS=1`: it needs no shim. (Importing
deepctr starts a PyPI version check in a thread; offline it prints one line and goes on.)
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.bench import common
from tfrec.bench import flops as flops_lib
from tfrec.data.item_store import ItemStore

FLAGS = flags.FLAGS


common.define("string", "model", "cross_bst", "Registered model to train (tfrec.models.registry).")
common.define("enum", "vs", "", "Also train this reference implementation on the same tensors.",
        enum_values=["", "deepctr"])
common.define("integer", "steps", 20, "Timed train steps per model (one per turn).")
common.define("integer", "warmup", 3, "Untimed steps per model first (tracing, allocation).")
common.define("integer", "batch", 1024, "Batch size (SEMI A.1: 1024).")
common.define("integer", "seq", 50, "History length per domain, all positions real (SEMI: 50).")
common.define("integer", "dim", 128, "Item/sequence width d; DeepCTR's embedding width (SEMI: 128).")
common.define("integer", "heads", 8, "Attention heads (SEMI A.1: 8).")
common.define("integer", "ff_dim", 128, "Feed-forward width of the attention block (SEMI: 128).")
common.define("list", "item_features", [], "Our models' item inputs (default: each model's "
              "own: id, category, visual for BST; visual, category for THACIL); DeepCTR's BST "
              "reads the item id only, so --item_features=id --dropout=0 compares the "
              "implementations like for like.")
common.define("list", "also", [], "More registered models trained on the same tensors, taking "
              "turns with --model (e.g. --model=thacil --also=bst,atrank --seq=160): each "
              "gets a rate ratio against --model from the same turns.")
common.define("multi_string", "model_args", [], "Model constructor arguments as tfrec.train's "
              "--model_args (applied last; names only other models take are skipped), e.g. "
              "SEMI's paper inputs (configs/semi/paper_inputs.flags): "
              "--model_args=item_features=[pre_extracted],attention_dropout=0.")
common.define("float", "dropout", None, "Dropout of every model; default: each model's own (ours "
        "0.1 as SEMI A.1, DeepCTR's BST 0). Set it to compare like for like.")
common.define("integer", "items", 20_000, "Items in the in-memory item store.")
common.define("integer", "categories", 50, "Item categories.")
common.define("integer", "matmul_size", 2048, "Side of the square float32 matmul of the peak figure.")
common.define("boolean", "jit_compile", False, "XLA-compile every model's train step.")
common.define("enum", "precision", "float32", "Keras mixed-precision policy of every model.",
        enum_values=["float32", "mixed_bfloat16", "mixed_float16"])
common.define("integer", "seed", 0, "Seed of the random features and weights.")

DEEPCTR_MISSING = ("--vs=deepctr needs DeepCTR 0.9.4, which is not installed. Install the "
                   "optional bench extra: pip install -e \".[bench]\"")
REQUEST_TIME = 10 ** 7  # seconds; histories lie up to a week before it
GOAL_VS_DEEPCTR = 1.5


@dataclasses.dataclass
class Entry:
  """One model under measurement and its figures."""

  name: str
  model: keras.Model
  dataset: tf.data.Dataset
  flops: flops_lib.FlopCount
  seconds: List[float] = dataclasses.field(default_factory=list)  # per timed step
  inference: Optional[flops_lib.FlopCount] = None  # model(x, training=False) on one batch

  @property
  def step(self) -> float:
    """Median step seconds."""
    return statistics.median(self.seconds)


# ------------------------------------------------------------------ synthetic inputs


def features(batch: int, seq: int, num_items: int, seed: int
             ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """One batch of ranking features with full histories of `seq` per domain, and labels."""
  rng = np.random.default_rng(seed)
  half = num_items // 2
  x = {"timestamp": np.full([batch], REQUEST_TIME, np.int64),
       "item_id": rng.integers(half + 1, num_items + 1, batch)}
  for d, (low, high) in (("source", (1, half + 1)), ("target", (half + 1, num_items + 1))):
    x[f"{d}_item_ids"] = rng.integers(low, high, [batch, seq])
    ago = -np.sort(-rng.integers(1, 7 * 86_400, [batch, seq]), axis=1)  # oldest first
    x[f"{d}_timestamps"] = REQUEST_TIME - ago
    x[f"{d}_mask"] = np.ones([batch, seq], bool)
  return x, rng.integers(0, 2, batch).astype(np.float32)


def repeated(batches: List[Tuple[Any, Any]]) -> tf.data.Dataset:
  """A few distinct in-memory batches, repeated forever."""
  stacked = tf.nest.map_structure(lambda *t: np.stack(t), *batches)
  return tf.data.Dataset.from_tensor_slices(stacked).repeat().prefetch(2)


def deepctr_inputs(x: Dict[str, np.ndarray], y: np.ndarray
                   ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """The same batch as DeepCTR BST inputs: candidate, target-domain history, its length."""
  return ({"item_id": x["item_id"][:, None], "hist_item_id": x["target_item_ids"],
           "seq_length": x["target_mask"].sum(axis=1, keepdims=True).astype(np.int64)},
          y[:, None])


# ------------------------------------------------------------------ models


def compile_model(model: keras.Model, from_logits: bool) -> keras.Model:
  model.compile(keras.optimizers.Adam(1e-3),
                keras.losses.BinaryCrossentropy(from_logits=from_logits),
                jit_compile=FLAGS.jit_compile)
  return model


def ours(name: str, store: ItemStore) -> keras.Model:
  """A registered tfrec model at the bench's sizes, its item store filled in."""
  model = common.build_model(name, store, FLAGS.categories, FLAGS.seq, FLAGS.dim, FLAGS.heads,
                             FLAGS.ff_dim, FLAGS.dropout,  # None: the model's default
                             item_features=FLAGS.item_features or None,
                             model_args=FLAGS.model_args)
  return compile_model(model, from_logits=True)


def import_deepctr() -> Any:
  """deepctr's BST and feature columns, or exit naming the install command."""
  try:
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat
    from deepctr.models import BST
  except ImportError as e:
    sys.exit(f"{DEEPCTR_MISSING} ({e})")
  return BST, SparseFeat, VarLenSparseFeat


def deepctr_bst(num_items: int, dropout: float = 0.0) -> keras.Model:
  """DeepCTR 0.9.4's BST on the target-domain history: item ids only, width d, one block.

  DeepCTR splits the history embedding width over the heads (att_embedding_size = d / heads:
  16 x 8 = 128). Its other settings keep their defaults (DNN 256-128-64; `dropout`, its
  `dnn_dropout`, applies to the transformer and the DNN and defaults to DeepCTR's 0). It is
  built in float32 whatever the global policy: DeepCTR's layers mix float32 constants into
  their computations and fail under mixed precision.
  """
  bst, sparse_feat, varlen_sparse_feat = import_deepctr()
  policy = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("float32")
  columns = [
      sparse_feat("item_id", num_items + 1, embedding_dim=FLAGS.dim),
      varlen_sparse_feat(sparse_feat("hist_item_id", num_items + 1, embedding_dim=FLAGS.dim,
                                     embedding_name="item_id"),
                         maxlen=FLAGS.seq, length_name="seq_length")]
  try:
    model = bst(columns, ["item_id"], transformer_num=1, att_head_num=FLAGS.heads,
                dnn_dropout=dropout, seed=FLAGS.seed)
  finally:
    keras.mixed_precision.set_global_policy(policy)
  return compile_model(model, from_logits=False)


# ------------------------------------------------------------------ timing


class _StepClock(keras.callbacks.Callback):
  """Seconds of each train step, from the batch's begin callback to its end callback.

  Only the step itself (`model.train_function` on the next batch) lies in between; `fit`'s
  own set-up (data handler, iterator) comes before the first begin.
  """

  def __init__(self):
    super().__init__()
    self.seconds: List[float] = []
    self._start = 0.0

  def on_train_batch_begin(self, batch, logs=None):
    self._start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)


def timed_step(entry: Entry) -> float:
  """Trains `entry`'s model for one step with `fit`; returns that step's seconds."""
  clock = _StepClock()
  entry.model.fit(entry.dataset, steps_per_epoch=1, epochs=1, verbose=0, callbacks=[clock])
  entry.seconds.append(clock.seconds[0])
  return clock.seconds[0]


def matmul_timer(size: int, dtype: tf.DType) -> Callable[[], float]:
  """Returns run(): the seconds of one size x size matmul (a `tf.function` call)."""
  a = tf.random.normal([size, size], dtype=tf.float32, seed=1)
  b = tf.random.normal([size, size], dtype=tf.float32, seed=2)
  a, b = tf.cast(a, dtype), tf.cast(b, dtype)

  @tf.function
  def product(a, b):
    return tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32))

  product(a, b).numpy()  # trace and warm up

  def run() -> float:
    start = time.perf_counter()
    product(a, b).numpy()
    return time.perf_counter() - start

  return run


# ------------------------------------------------------------------ report


def quartiles(values: List[float]) -> Tuple[float, float, float]:
  """(lower quartile, median, upper quartile) of one or more values."""
  if len(values) < 2:
    return values[0], values[0], values[0]
  q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
  return q1, q2, q3


def paired_ratio(a: List[float], b: List[float]) -> Tuple[float, float, float]:
  """Rate ratio a/b per turn (b's seconds / a's): (median, lower quartile, upper quartile)."""
  q1, q2, q3 = quartiles([tb / ta for ta, tb in zip(a, b)])
  return q2, q1, q3


def report(entries: List[Entry], matmul: Dict[str, List[float]]) -> str:
  """The figures table, MFU against the float32 matmul of the same turns, and the ratios."""
  mm_gflop = 2 * FLAGS.matmul_size ** 3 / 1e9
  peak = mm_gflop / statistics.median(matmul["float32"])
  lines = [
      f"train step throughput: batch {FLAGS.batch}, histories of {FLAGS.seq} per domain, "
      f"d={FLAGS.dim}, {FLAGS.heads} heads, ff {FLAGS.ff_dim}, {FLAGS.items:,} items, "
      f"precision {FLAGS.precision}, jit_compile={FLAGS.jit_compile}, our item features "
      f"{','.join(FLAGS.item_features) or 'each model default'} (DeepCTR: id), dropout "
      f"{_dropouts(entries)}"
      + "".join(f", --model_args={a}" for a in FLAGS.model_args)
      + f"; {os.cpu_count()} CPU cores, TF {tf.__version__}",
      f"median of {len(entries[0].seconds)} timed steps per model, taken in turns, after "
      f"{FLAGS.warmup} warm-up steps",
      "",
      f"  {'model':<13}{'examples/s':>11}{'step ms':>9}{'(quartiles)':>14}{'GFLOP/step':>12}"
      f"{'GFLOP/s':>9}{'MFU':>7}"]
  for e in entries:
    q1, _, q3 = quartiles(e.seconds)
    gflop = e.flops.total / 1e9
    lines.append(f"  {e.name:<13}{FLAGS.batch / e.step:>11,.0f}{e.step * 1e3:>9,.0f}"
                 f"{f'{q1 * 1e3:,.0f}-{q3 * 1e3:,.0f}':>14}{gflop:>12.2f}"
                 f"{gflop / e.step:>9.1f}{gflop / e.step / peak:>7.1%}")
  lines.append("  per instance (ADAPT Table V): " + "; ".join(
      f"{e.name} train {e.flops.total / FLAGS.batch / 1e6:,.2f} MFLOP"
      + (f", inference {e.inference.total / FLAGS.batch / 1e6:,.2f} MFLOP"
         if e.inference is not None else "") for e in entries))
  for dtype, seconds in matmul.items():
    q1, _, q3 = quartiles([mm_gflop / t for t in seconds])
    lines.append(f"  matmul {FLAGS.matmul_size}x{FLAGS.matmul_size} {dtype}: "
                 f"{mm_gflop / statistics.median(seconds):,.1f} GFLOP/s "
                 f"(quartiles {q1:,.1f}-{q3:,.1f})" + ("  <- MFU's denominator"
                                                      if dtype == "float32" else ""))
  unknown = [f"{e.name}: {u}" for e in entries for u in e.flops.unknown]
  if unknown:
    lines.append(f"  FLOPs not counted (shapes not static): {'; '.join(unknown[:5])}")
  by_name = {e.name: e for e in entries}
  for name in FLAGS.also:
    if name in by_name and name != entries[0].name:
      r, q1, q3 = paired_ratio(entries[0].seconds, by_name[name].seconds)
      lines.append(f"  ours {entries[0].name} / ours {name}: {r:.2f}x examples/s (quartiles "
                   f"{q1:.2f}-{q3:.2f})")
  if "cross_bst" in by_name and "bst" in by_name:
    r, q1, q3 = paired_ratio(by_name["cross_bst"].seconds, by_name["bst"].seconds)
    lines.append(f"  ours cross_bst / ours bst: {r:.2f}x (quartiles {q1:.2f}-{q3:.2f})")
  if "bst" in by_name and "deepctr_bst" in by_name:
    r, q1, q3 = paired_ratio(by_name["bst"].seconds, by_name["deepctr_bst"].seconds)
    verdict = "meets" if r >= GOAL_VS_DEEPCTR else "BELOW"
    lines.append(f"  ours bst / DeepCTR BST, same tensors: {r:.2f}x (quartiles {q1:.2f}-"
                 f"{q3:.2f}); {verdict} the {GOAL_VS_DEEPCTR}x goal")
    if FLAGS.precision != "float32":
      lines.append("  (DeepCTR's BST ran in float32: it fails under mixed precision)")
  return "\n".join(lines)


def _dropouts(entries: List[Entry]) -> str:
  if FLAGS.dropout is not None:
    return f"{FLAGS.dropout:g}"
  ours = [e.model for e in entries if e.name != "deepctr_bst"]
  rate = getattr(ours[0], "dropout", None) if ours else None
  text = f"{rate:g} (ours)" if rate is not None else "defaults"
  inner = getattr(ours[0], "block_dropout", rate) if ours else None
  if inner is not None and inner != rate:  # SEMI's attention_dropout (A.1: after the MLP only)
    text += f", {inner:g} inside the attention blocks"
  if any(e.name == "deepctr_bst" for e in entries):
    text += ", 0 (DeepCTR's default; --dropout sets both)"
  return text


def main(argv) -> None:
  common.check_no_arguments(argv)
  if FLAGS.steps < 1:
    raise app.UsageError("--steps must be >= 1")
  if FLAGS.vs == "deepctr":
    import_deepctr()  # fail before anything is built
  keras.mixed_precision.set_global_policy(FLAGS.precision)
  keras.utils.set_random_seed(FLAGS.seed)
  store = common.random_item_store(FLAGS.items, FLAGS.categories, FLAGS.dim, FLAGS.seed)
  batches = [features(FLAGS.batch, FLAGS.seq, FLAGS.items, FLAGS.seed + i) for i in range(4)]
  names = list(dict.fromkeys([FLAGS.model] + list(FLAGS.also)))
  if FLAGS.vs and "bst" not in names:
    names.append("bst")
  entries = []
  for name in names:
    model = ours(name, store)
    first = _tensors(batches[0])[0]
    entries.append(Entry(name, model, repeated(batches),
                         flops_lib.train_step_flops(model, _tensors(batches[0])),
                         inference=flops_lib.function_flops(
                             lambda x, m=model: m(x, training=False), first)))
  if FLAGS.vs == "deepctr":
    dc_batches = [deepctr_inputs(*b) for b in batches]
    model = deepctr_bst(FLAGS.items, dropout=FLAGS.dropout or 0.0)
    entries.append(Entry("deepctr_bst", model, repeated(dc_batches),
                         flops_lib.train_step_flops(model, _tensors(dc_batches[0]))))
  for e in entries:
    if FLAGS.warmup:
      e.model.fit(e.dataset, steps_per_epoch=FLAGS.warmup, epochs=1, verbose=0)
  dtypes = ["float32"]
  compute = keras.mixed_precision.global_policy().compute_dtype
  if compute != "float32":
    dtypes.append(compute)
  timers = {d: matmul_timer(FLAGS.matmul_size, tf.as_dtype(d)) for d in dtypes}
  matmul: Dict[str, List[float]] = {d: [] for d in dtypes}
  for turn in range(FLAGS.steps):
    for d, run in timers.items():
      matmul[d].append(run())
    for e in (entries if turn % 2 == 0 else entries[::-1]):
      timed_step(e)
    if (turn + 1) % 5 == 0 or turn + 1 == FLAGS.steps:
      print(f"{turn + 1}/{FLAGS.steps} steps: " + ", ".join(
          f"{e.name} {FLAGS.batch / e.step:,.0f}" for e in entries) + " examples/s", flush=True)
  print(report(entries, matmul))


def _tensors(batch: Tuple[Any, Any]) -> Tuple[Any, Any]:
  return tf.nest.map_structure(tf.constant, batch)


__all__ = ["deepctr_bst", "deepctr_inputs", "features", "main", "paired_ratio",
           "quartiles", "report"]
