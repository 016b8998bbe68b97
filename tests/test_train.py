"""The trainer end to end on tiny synthetic data: fit, TensorBoard tags, resume at the right
input position, NaN handling, broken checkpoint states, determinism, run-dir checks, configs."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from absl.testing import flagsaver

from tfrec import callbacks as cb
from tfrec import config as config_lib
from tfrec import flags as tfrec_flags
from tfrec import runs
from tfrec import train as train_lib
from tfrec.data.tfrecord_io import Manifest
from tfrec.models import registry
from tfrec.models.youtubenet import YouTubeNet

from conftest import flagfile_config, make_config  # noqa: E402  (shared with other tests)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scalars(log_dir):
  """tag -> [(step, value)] from the event files of one TensorBoard run directory."""
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(log_dir, size_guidance={"tensors": 0})
  acc.Reload()
  out = {}
  for tag in acc.Tags()["tensors"]:
    out[tag] = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
  return out


# --------------------------------------------------------------------------- fit + logs

def test_fit_writes_checkpoints_logs_and_config(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  cfg = make_config(syn_dir, run, model="bst", model_kwargs=dict(num_heads=2), epochs=3,
                    steps_per_epoch=6, validation_steps=2)
  result = train_lib.train(cfg, flags_text="--model=bst\n")
  assert result.steps == 18 and result.resumed_from_step == 0
  losses = result.history["loss"]
  assert losses[-1] < losses[0], losses
  paths = config_lib.run_paths(run)
  for name in ("best", "final"):
    assert tf.io.gfile.exists(paths[name] + ".index")
  assert config_lib.RunConfig.load(run) == cfg
  assert open(os.path.join(run, config_lib.FLAGS_FILE)).read() == "--model=bst\n"
  # BackupAndRestore deletes its checkpoint once the run completes.
  assert not glob.glob(os.path.join(paths["backup"], "**", "*.index"), recursive=True)
  train_tags = scalars(os.path.join(paths["logs"], "train"))
  for tag in ("epoch_loss", "epoch_auc", "batch_loss",
              "examples_per_second", "learning_rate"):
    assert tag in train_tags, sorted(train_tags)
  epoch_loss = [v for _, v in train_tags["epoch_loss"]]
  np.testing.assert_allclose(epoch_loss, losses, rtol=1e-5)
  assert all(v > 0 for _, v in train_tags["examples_per_second"])
  val_tags = scalars(os.path.join(paths["logs"], "validation"))
  assert {"epoch_loss", "epoch_auc"} <= set(val_tags)
  # The best checkpoint is the epoch with the highest validation AUC: re-validating it on the
  # same (unshuffled) validation batches reproduces that AUC.
  model, *_ = runs.restore_model(run, "best")
  model.compile()  # the model's own test step: its task's AUC
  val = runs.reader(cfg, cfg.data.valid_split, training=False).dataset(32).take(2)
  auc = model.evaluate(val, verbose=0, return_dict=True)["auc"]
  assert auc == pytest.approx(max(result.history["val_auc"]), abs=1e-5)


def test_same_run_dir_with_other_options_is_refused(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  train_lib.train(make_config(syn_dir, run, steps_per_epoch=2))
  with pytest.raises(ValueError, match="holds a finished run"):
    train_lib.train(make_config(syn_dir, run, steps_per_epoch=2))
  with pytest.raises(ValueError, match="different run"):
    train_lib.train(make_config(syn_dir, run, steps_per_epoch=2, learning_rate=0.1))


# --------------------------------------------------------------------------- resume

@keras.utils.register_keras_serializable(package="tfrec_test")
class CountingYouTubeNet(YouTubeNet):
  """YouTubeNet that counts, in a (checkpointed) variable, how often each training record was
  seen: record r of file f has index file_offsets[f] + r."""

  def __init__(self, num_items, file_offsets=(0,), total_records=1, **kwargs):
    super().__init__(num_items, **kwargs)
    self.file_offsets = [int(x) for x in file_offsets]
    self.total_records = int(total_records)
    self.seen = self.add_weight("seen", shape=[self.total_records], dtype=tf.int32,
                                initializer="zeros", trainable=False)

  def call(self, features, training=None):
    if training and "_record" in features:
      idx = tf.gather(tf.constant(self.file_offsets, tf.int64),
                      features["_file"]) + features["_record"]
      self.seen.scatter_nd_add(idx[:, None], tf.ones_like(idx, tf.int32))
    return super().call(features, training=training)

  def get_config(self):
    return {**super().get_config(), "file_offsets": self.file_offsets,
            "total_records": self.total_records}


if "counting_youtubenet_test" not in registry.names():
  registry.register("counting_youtubenet_test", CountingYouTubeNet, "test-only counter")


class AtStep(keras.callbacks.Callback):
  """Runs `action(model)` after global step `at`."""

  def __init__(self, at, action):
    super().__init__()
    self.at, self.action = at, action

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == self.at:
      self.action(self.model)


def Kill(at):  # noqa: N802  (reads as a callback class at the call sites)
  """Simulates a killed process after step `at`."""

  def kill(model):
    raise KeyboardInterrupt(f"killed at step {at}")

  return AtStep(at, kill)


def PoisonWeights(at):  # noqa: N802
  """Makes the weights NaN after step `at`, as a diverging optimiser would."""

  def poison(model):
    for w in model.trainable_weights:
      w.assign(tf.fill(tf.shape(w), np.nan))

  return AtStep(at, poison)


def counting_config(syn_dir, run):
  manifest = Manifest.load(syn_dir, "ranking", "train")
  counts = [s.records for s in manifest.shards]
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
  return make_config(syn_dir, run, model="counting_youtubenet_test",
                     model_kwargs=dict(file_offsets=offsets, total_records=sum(counts)),
                     batch_size=64), sum(counts)


def seen_counts(run):
  model, *_ = runs.restore_model(run, "final")
  return model.seen.numpy()


@pytest.mark.parametrize("derive_position", [True, False])
def test_killed_run_resumes_at_the_same_step_and_input_position(
    syn_dir, tmp_path, monkeypatch, derive_position):
  run = str(tmp_path / "run")
  cfg, total = counting_config(syn_dir, run)
  steps = -(-total // 64)
  assert steps > 7
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(cfg, extra_callbacks=[Kill(7)])
  assert cb.backup_step(config_lib.run_paths(run)["backup"]) == 6
  if not derive_position:  # the Keras trap: resume the step but re-read the data from its start
    monkeypatch.setattr(cb, "backup_step", lambda d: 0)
  result = train_lib.train(cfg)
  assert result.steps == steps
  seen = seen_counts(run)
  if derive_position:
    assert result.resumed_from_step == 6
    np.testing.assert_array_equal(seen, np.ones(total))  # every example exactly once
  else:
    assert (seen != 1).any()  # without the input position, examples repeat and others vanish


def test_uninterrupted_epoch_sees_every_example_once(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  cfg, total = counting_config(syn_dir, run)
  train_lib.train(cfg)
  np.testing.assert_array_equal(seen_counts(run), np.ones(total))


# --------------------------------------------------------------------------- failures

def test_nan_loss_stops_keeps_last_good_backup_and_never_exports(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  export_dir = str(tmp_path / "export")
  cfg = make_config(syn_dir, run, steps_per_epoch=4, epochs=3, export_dir=export_dir)
  with pytest.raises(cb.TrainingDiverged, match="not finite|nan"):
    train_lib.train(cfg, extra_callbacks=[PoisonWeights(9)])
  paths = config_lib.run_paths(run)
  assert cb.backup_step(paths["backup"]) == 9  # the last good step's backup is kept
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
      os.path.join(paths["backup"], "chief")))
  for key in reader.get_variable_to_shape_map():
    value = reader.get_tensor(key)
    if key.startswith("model/") and np.issubdtype(np.asarray(value).dtype, np.floating):
      assert np.isfinite(value).all(), key
  assert tf.io.gfile.exists(paths["best"] + ".index")
  assert not tf.io.gfile.exists(paths["final"] + ".index")
  assert not os.path.exists(export_dir)


def test_main_exits_nonzero_when_training_diverges(monkeypatch):
  tfrec_flags.define_flags()

  def diverge(cfg, **kwargs):
    raise cb.TrainingDiverged("loss is nan at step 3")

  monkeypatch.setattr(train_lib, "train", diverge)
  if not tfrec_flags.FLAGS.is_parsed():
    tfrec_flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(data_dir="d", model="bst", run_dir="r"):
    with pytest.raises(SystemExit) as e:
      train_lib.main([])
  assert e.value.code not in (0, None) and "diverged" in str(e.value.code)


def test_checkpoint_state_pointing_at_missing_files_is_an_error(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  cfg, _ = counting_config(syn_dir, run)
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(cfg, extra_callbacks=[Kill(4)])
  chief = os.path.join(config_lib.run_paths(run)["backup"], "chief")
  for f in glob.glob(os.path.join(chief, "*.index")):
    os.remove(f)
  assert tf.train.latest_checkpoint(chief) is None  # what makes Keras restart silently
  with pytest.raises(cb.CheckpointError, match="missing"):
    train_lib.train(cfg)


def test_seeded_deterministic_runs_give_identical_weights(syn_dir, tmp_path):
  def weights(run, seed):
    cfg = make_config(syn_dir, str(tmp_path / run), model="bst",
                      model_kwargs=dict(num_heads=2), steps_per_epoch=3, seed=seed,
                      deterministic=True)
    train_lib.train(cfg)
    model, *_ = runs.restore_model(cfg.train.run_dir, "final")
    return [w.numpy() for w in model.weights]

  a, b, c = weights("a", 1), weights("b", 1), weights("c", 2)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, z) for x, z in zip(a, c))


# --------------------------------------------------------------------------- configs

# Runnable configs; configs/reproduce/ holds overlays applied after a row's own flagfile
# (tests/test_reproduce.py checks them).
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "**", "*.flags"),
                                      recursive=True)
                 if os.sep + "reproduce" + os.sep not in p)
# Settings other flagfiles include, and overlays added after a model's flagfile; no --model.
INCLUDES = ("base.flags", "common.flags", "paper_inputs.flags")


def _fresh_flags():
  from absl import flags
  fv = flags.FlagValues()
  tfrec_flags.define_flags(fv)
  return fv


def test_every_config_parses_and_names_a_registered_model(monkeypatch):
  monkeypatch.chdir(REPO)  # flagfiles include each other by repository-relative paths
  assert len(CONFIGS) >= 5
  for path in CONFIGS:
    if os.path.basename(path) in INCLUDES:
      continue
    fl = _fresh_flags()
    fl(["prog", f"--flagfile={path}"])
    cfg = tfrec_flags.run_config(fl)
    assert cfg.model.name in registry.names(), path
    # The model takes every model flag the config sets (a misplaced flag is a TypeError).
    sizes = dict(num_items=10, num_categories=4, visual_dim=3)
    if "num_tokens" in registry.accepted_args(registry.get(cfg.model.name).cls):
      sizes["num_tokens"] = 5  # title features (ADAPT's extractor)
    if "num_tags" in registry.accepted_args(registry.get(cfg.model.name).cls):
      sizes["num_tags"] = 6  # tag features (COUPLE's baselines: items from tags)
    registry.build(cfg.model.name, **sizes, **cfg.model.kwargs)


# ADAPT's Table IV rows of models that other flagfiles already run (same model code, other
# settings): their two steps are `slow`; the parse test above builds each with its settings and
# tests/test_reproduce_adapt.py checks what they resolve to. Keeps the default suite in budget.
SETTINGS_ONLY = {os.path.join(REPO, "configs", "adapt", f"{n}.flags")
                 for n in ("mf", "ncf", "youtubenet", "din", "bst", "cross_bst", "thacil")} | {
    # SEMI Table 1's DIEN and THACIL rows: the same models' flagfiles under configs/adapt and
    # configs/thacil run.
    os.path.join(REPO, "configs", *p) for p in (("baselines", "dien.flags"),
                                                ("baselines", "thacil.flags"))} | {
    # COUPLE's Table 5 / Fig. 5 variants: configs/couple/couple.flags with model arguments the
    # model tests cover (tests/test_couple.py: ablations; tests/test_reproduce_couple.py: the
    # arguments each resolves to).
    os.path.join(REPO, "configs", "couple", f"{n}.flags")
    for n in ("base_history", "base_content", "base_tree", "batch_negatives",
              "no_orthogonality")} | {
    # COUPLE's Table 4 rows of retrieval baselines: configs/retrieval/'s models (which run
    # here) with items from tags (tests/test_couple_baselines.py, test_couple.py train on tags).
    os.path.join(REPO, "configs", "couple", f"{n}.flags")
    for n in ("dssm", "youtube_dnn", "sasrec", "comirec_sa")} | {
    # COUPLE, DeepCoNN and ICAN themselves: tests/test_couple.py trains COUPLE through
    # train.py, tests/test_couple_baselines.py DeepCoNN and ICAN.
    os.path.join(REPO, "configs", "couple", f"{n}.flags") for n in ("couple", "deepconn", "ican")} | {
    # M5's baselines at the paper's d = 128 and M5 itself: tests/test_m5_baselines.py and
    # tests/test_m5.py train them through train.py (BST, SDM and PDN in the slow set there).
    os.path.join(REPO, "configs", "m5", f"{n}.flags")
    for n in ("bst_two_tower", "sdm", "pdn", "cl4srec", "gru4rec_plus", "m5")}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow)
                                  if p in SETTINGS_ONLY else p
                                  for p in CONFIGS if os.path.basename(p) not in INCLUDES],
                         ids=lambda p: os.path.relpath(p, REPO))
def test_every_config_runs_as_is_for_two_steps(syn_dir, tmp_path, monkeypatch, path):
  """Each flagfile as written (model sizes included), with only the data, the output
  directories and the length shortened."""
  monkeypatch.chdir(REPO)
  text = open(path).read()
  extra = [f"--export_dir={tmp_path}/e/1"] if "--export_dir" in text else []
  if "--model=ccl" in text:  # the tiny data's ccl_pair split; a dictionary it can fill fast
    extra += ["--train_split=train", "--model_args=queue_size=128"]
  if "--init_from" in text:  # the pre-training run it names is covered by tests/test_ccl.py
    extra += ["--init_from="]
  if "cg_init=" in text:  # M5's CG table from GraphSAGE's file beside its dataset: random
    extra += ["--model_args=cg_init=none"]  # here (tests/test_m5.py loads a file)
  cfg = flagfile_config(path, syn_dir, f"{tmp_path}/r", *extra)
  result = train_lib.train(cfg)
  assert result.steps == 2 and np.isfinite(result.history["loss"]).all()
  # Every named loss of the model (CMF's and MiNet's source, DIEN's auxiliary...) is logged
  # and finite, weighted as the flagfile says.
  losses = registry.get(cfg.model.name).cls.LOSSES
  for name in losses if len(losses) > 1 else ():
    assert np.isfinite(result.history[f"{name}_loss"]).all(), name
  if cfg.train.export_dir:
    assert tf.saved_model.load(cfg.train.export_dir).signatures["rank"] is not None


@pytest.mark.parametrize("precision,jit", [("mixed_bfloat16", False), ("float32", True)])
def test_mixed_precision_and_xla_switches_train(syn_dir, tmp_path, precision, jit):
  cfg = make_config(syn_dir, str(tmp_path / "run"), model="cross_bst",
                    model_kwargs=dict(num_heads=2), steps_per_epoch=3, precision=precision,
                    jit_compile=jit)
  try:
    result = train_lib.train(cfg)
    assert np.isfinite(result.history["loss"]).all()
    assert keras.mixed_precision.global_policy().name == precision
  finally:
    keras.mixed_precision.set_global_policy("float32")
  model, *_ = runs.restore_model(cfg.train.run_dir, "final")
  assert all(w.dtype in (tf.float32, tf.int32) for w in model.weights)  # variables stay fp32


@pytest.mark.slow
def test_tensorboard_serves_the_run_scalars_over_http(syn_dir, tmp_path):
  """Starts `tensorboard` on a loopback port and reads the training loss through its API."""
  import json
  import socket
  import subprocess
  import sys
  import time
  import urllib.request
  run = str(tmp_path / "run")
  train_lib.train(make_config(syn_dir, run, steps_per_epoch=3, epochs=2))
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir",
                           config_lib.run_paths(run)["logs"], "--host", "127.0.0.1", "--port",
                           str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = (f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=train&tag=epoch_loss")
  try:
    deadline, data = time.time() + 90, None
    while time.time() < deadline:
      try:
        with urllib.request.urlopen(url, timeout=5) as r:
          data = json.loads(r.read())
        if len(data) == 2:
          break
      except OSError:
        pass
      time.sleep(1)
    assert data is not None and len(data) == 2, data
    served = [row[2] for row in data]  # [wall_time, step, value]
    local = [v for _, v in scalars(os.path.join(config_lib.run_paths(run)["logs"], "train"))
             ["epoch_loss"]]
    np.testing.assert_allclose(served, local, rtol=1e-6)
  finally:
    proc.kill()
    proc.wait()



def test_clip_norm_reaches_the_optimizer_and_the_config():
  opt = train_lib.make_optimizer(config_lib.TrainConfig(run_dir="x", clip_norm=5.0))
  assert opt.global_clipnorm == 5.0
  assert train_lib.make_optimizer(config_lib.TrainConfig(run_dir="x")).global_clipnorm is None
  fl = _fresh_flags()
  fl(["prog", "--model=youtubenet", "--run_dir=r", "--data_dir=d", "--clip_norm=5"])
  assert tfrec_flags.run_config(fl).train.clip_norm == 5.0


def test_export_after_training_is_the_best_checkpoint_with_the_datasets_limits(syn_dir, tmp_path):
  from tfrec import serving
  from tfrec.data.info import DatasetInfo
  export_dir = str(tmp_path / "export" / "1")
  cfg = make_config(syn_dir, str(tmp_path / "run"), steps_per_epoch=3, epochs=2,
                    validation_steps=2, export_dir=export_dir)
  result = train_lib.train(cfg)
  assert result.export_dir == export_dir
  meta = serving.read_export_info(export_dir)
  assert meta["checkpoint"] == "best"  # the weights evaluate reports, not the last step's
  assert meta["max_len"] == DatasetInfo.load(syn_dir).max_seq_len
  assert "rank" in tf.saved_model.load(export_dir).signatures


def test_validation_steps_beyond_the_split_still_validate_every_epoch(syn_dir, tmp_path):
  # Asking for more validation batches than the split holds ran Keras out of data after the
  # first epoch, and later epochs silently skipped validation.
  cfg = make_config(syn_dir, str(tmp_path / "run"), steps_per_epoch=2, epochs=3,
                    validation_steps=10_000)
  history = train_lib.train(cfg).history
  assert len(history["val_loss"]) == 3 and np.isfinite(history["val_loss"]).all()


def test_weight_decay_selects_adamw_whose_decay_is_decoupled_from_the_gradient():
  t = config_lib.TrainConfig(run_dir="r", learning_rate=0.1, weight_decay=0.01)
  opt = train_lib.make_optimizer(t)
  assert isinstance(opt, keras.optimizers.AdamW)
  assert isinstance(train_lib.make_optimizer(config_lib.TrainConfig(run_dir="r")),
                    keras.optimizers.Adam)
  w = tf.Variable([1.0, -2.0])
  opt.apply_gradients([(tf.zeros(2), w)])  # no gradient: only the decay moves the weights
  np.testing.assert_allclose(w.numpy(), np.array([1.0, -2.0]) * (1 - 0.1 * 0.01), rtol=1e-6)
  fl = _fresh_flags()
  fl(["prog", "--data_dir=d", "--run_dir=r", "--model=dual", "--weight_decay=0.01"])
  assert tfrec_flags.run_config(fl).train.weight_decay == 0.01


def test_linear_decay_falls_to_zero_at_the_runs_last_step(syn_dir, tmp_path, monkeypatch):
  t = config_lib.TrainConfig(run_dir="r", learning_rate=0.002, lr_decay="linear")
  opt = train_lib.make_optimizer(t, total_steps=100)
  schedule = keras.optimizers.schedules.deserialize(opt.get_config()["learning_rate"])
  for step, rate in ((0, 0.002), (25, 0.0015), (100, 0.0), (150, 0.0)):
    assert float(schedule(step)) == pytest.approx(rate, abs=1e-9)
  with pytest.raises(ValueError, match="lr_decay must be one of"):
    config_lib.TrainConfig(run_dir="r", lr_decay="cosine")
  # Through train.py: the schedule spans the run (epochs x steps per epoch = 6 steps).
  made = []
  real = train_lib.make_optimizer
  monkeypatch.setattr(train_lib, "make_optimizer",
                      lambda t, total_steps=0: made.append(total_steps) or real(t, total_steps))
  cfg = make_config(syn_dir, str(tmp_path / "run"), steps_per_epoch=3, epochs=2,
                    learning_rate=0.006, lr_decay="linear")
  assert train_lib.train(cfg).steps == 6 and made == [6]
  fl = _fresh_flags()
  fl(["prog", "--data_dir=d", "--run_dir=r", "--model=dual", "--lr_decay=linear"])
  assert tfrec_flags.run_config(fl).train.lr_decay == "linear"
