"""The training core every model shares (tfrec/models/core.py), model arguments from flagfiles,
validation that never touches a reported split, and exact resumption of in-step randomness."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from absl import flags

from tfrec import config as config_lib
from tfrec import flags as tfrec_flags
from tfrec import runs
from tfrec import train as train_lib
from tfrec.data import schema
from tfrec.layers import step_random
from tfrec.models import core, model_args, registry
from tfrec.models.youtubenet import YouTubeNet

from conftest import make_config, run_two_replica_script  # noqa: E402
from test_train import Kill, scalars  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_youtubenet(**kwargs):
  m = YouTubeNet(12, dim=4, item_features=("id",), max_seq_len=3, mlp_units=(4,), **kwargs)
  m.build_and_fill(types.SimpleNamespace(num_items=12))
  m.compile(optimizer=keras.optimizers.Adam(0.1))
  return m


def ranking_batch(n=6, seed=0):
  rng = np.random.default_rng(seed)
  mask = np.ones((n, 3), bool)
  return {"target_item_ids": tf.constant(rng.integers(1, 13, (n, 3))),
          "target_timestamps": tf.zeros((n, 3), tf.int64), "target_mask": tf.constant(mask),
          "timestamp": tf.zeros([n], tf.int64), "item_id": tf.constant(rng.integers(1, 13, n)),
          "label": tf.constant(np.arange(n) % 2)}


# --------------------------------------------------------------------------- the contract

def test_every_registered_model_declares_the_training_contract():
  for name in registry.names():
    cls = registry.get(name).cls
    assert issubclass(cls, core.Model), name
    assert cls.LOSSES and len(set(cls.LOSSES)) == len(cls.LOSSES), name
    assert cls.MONITOR[1] in ("max", "min"), name
    assert cls.RECORD_KIND in schema.KINDS, name


def test_train_py_has_no_branch_on_a_record_kind_or_a_model_name():
  text = open(os.path.join(REPO, "tfrec", "train.py")).read()
  for word in ['"ranking"', '"ccl_pair"', '"ccl"', "RankingModel", "queue", "isinstance("]:
    assert word not in text, word


def test_the_ranking_loss_is_the_binary_cross_entropy_of_the_logits():
  m = tiny_youtubenet()
  batch = ranking_batch()
  losses = m.compute_losses(batch, training=False)
  logits = m(batch, training=False).numpy()
  y = batch["label"].numpy()
  p = 1 / (1 + np.exp(-logits))
  expected = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  np.testing.assert_allclose(losses["bce"].numpy(), expected, rtol=1e-5)
  logs = m.test_step(batch)
  assert float(logs["loss"]) == pytest.approx(expected.mean(), rel=1e-5)
  assert float(logs["bce_loss"]) == pytest.approx(expected.mean(), rel=1e-5)
  assert float(logs["bce_weight"]) == 1.0 and "auc" in logs


def test_a_zero_loss_weight_takes_that_loss_out_of_the_update():
  m = tiny_youtubenet()
  before = [w.numpy() for w in m.trainable_weights]
  m.configure_training(loss_weights={"bce": 0.0})
  logs = m.train_step(ranking_batch())
  assert float(logs["bce_weight"]) == 0.0 and float(logs["loss"]) == 0.0
  assert float(logs["bce_loss"]) > 0  # still measured and logged
  for a, w in zip(before, m.trainable_weights):
    np.testing.assert_array_equal(a, w.numpy())
  m.configure_training(loss_weights={"bce": 2.0})
  m.train_step(ranking_batch())
  assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, m.trainable_weights))


def test_loss_weights_name_the_losses_the_model_has():
  m = tiny_youtubenet()
  with pytest.raises(ValueError, match=r"no losses \['mlm'\]; its losses are \['bce'\]"):
    m.configure_training(loss_weights={"mlm": 0.5})
  assert tfrec_flags.loss_weights(["bce=0.5", "x=2"]) == {"bce": 0.5, "x": 2.0}
  with pytest.raises(ValueError, match="not name=number"):
    tfrec_flags.loss_weights(["bce"])


def test_compute_losses_must_return_the_declared_losses():
  class Wrong(YouTubeNet):
    def compute_losses(self, batch, training=None):
      return {"other": tf.zeros([2])}

  m = Wrong(12, dim=4, item_features=("id",), max_seq_len=3, mlp_units=(4,))
  m.build_and_fill(types.SimpleNamespace(num_items=12))
  m.compile(optimizer=keras.optimizers.Adam(0.1))
  with pytest.raises(ValueError, match=r"returned \['other'\]; LOSSES declares \['bce'\]"):
    m.train_step(ranking_batch())


def test_two_logical_cpus_give_one_devices_update_for_per_example_and_scalar_losses():
  result = run_two_replica_script("ranking_two_replicas.py")
  assert result["replicas"] == 2
  even, uneven = result["steps"]
  assert even["rows_per_replica"] == [2, 2] and uneven["rows_per_replica"] == [2, 1]
  for step in (even, uneven):
    assert step["weights_moved"] > 1e-3  # SGD moved the weights...
    assert step["weights_vs_single"] < 1e-6  # ...exactly as one device did
    assert abs(step["loss_multi"] - step["loss_single"]) < 1e-6


# --------------------------------------------------------------------------- model arguments

def test_model_args_are_typed_from_the_constructor():
  raw = model_args.parse(["dim=32,mlp_units=[64,32],dropout=0.5",
                          "use_inter_domain=false,ff_dim=none,item_features=[id,category]",
                          "dim=16"])  # a later name wins
  kwargs, skipped = model_args.resolve("semi", raw)
  assert kwargs == {"dim": 16, "mlp_units": [64, 32], "dropout": 0.5,
                    "use_inter_domain": False, "ff_dim": None,
                    "item_features": ["id", "category"]}
  assert skipped == ()
  assert model_args.split_entries("a=1,b=[2,3],c=x") == ["a=1", "b=[2,3]", "c=x"]


def test_model_args_another_model_takes_are_skipped_and_unknown_ones_are_errors():
  kwargs, skipped = model_args.resolve("din", model_args.parse(["num_heads=8,attention_units=[8]"]))
  assert kwargs == {"attention_units": [8]} and skipped == ("num_heads",)
  with pytest.raises(ValueError, match=r"no registered model takes \['num_head'\]; din takes "
                     r"attention_units, dim, "):
    model_args.resolve("din", model_args.parse(["num_head=8"]))
  with pytest.raises(ValueError, match="is not an int"):
    model_args.resolve("din", model_args.parse(["dim=eight"]))
  with pytest.raises(ValueError, match="come from the dataset"):
    model_args.resolve("din", model_args.parse(["num_items=3"]))
  with pytest.raises(ValueError, match="not name=value"):
    model_args.parse(["dim"])


def _flags(argv):
  fv = flags.FlagValues()
  tfrec_flags.define_flags(fv)
  fv(["prog"] + argv)
  return fv


def test_flagfile_model_args_reach_the_config_with_what_was_skipped(tmp_path):
  base = tmp_path / "base.flags"
  base.write_text("--model_args=dim=64,num_heads=4,mlp_units=[32]\n")
  fv = _flags([f"--flagfile={base}", "--model=youtubenet", "--data_dir=d", "--run_dir=r",
               "--model_args=dim=8"])
  cfg = tfrec_flags.run_config(fv)
  assert cfg.model.kwargs == {"dim": 8, "mlp_units": [32]}
  assert cfg.model.skipped == ("num_heads",)
  cfg.save(str(tmp_path / "run"))
  assert config_lib.RunConfig.load(str(tmp_path / "run")) == cfg


# --------------------------------------------------------------------------- validation

def test_training_refuses_to_validate_on_a_reported_split(syn_dir, tmp_path):
  for split in ("test", "test_cold"):
    cfg = make_config(syn_dir, str(tmp_path / split), steps_per_epoch=1, validation_steps=1)
    cfg = config_lib.RunConfig(
        data=config_lib.DataConfig(**{**cfg.data.__dict__, "valid_split": split}),
        model=cfg.model, train=cfg.train)
    with pytest.raises(ValueError, match=f"--valid_split={split}: evaluation reports this "
                       "split.*--allow_test_validation"):
      train_lib.train(cfg)
    assert not os.path.exists(cfg.train.run_dir)  # refused before anything is written


def test_test_validation_when_allowed_is_recorded(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  cfg = make_config(syn_dir, run, steps_per_epoch=1, validation_steps=1,
                    allow_test_validation=True)
  cfg = config_lib.RunConfig(data=config_lib.DataConfig(**{**cfg.data.__dict__,
                                                           "valid_split": "test"}),
                             model=cfg.model, train=cfg.train)
  train_lib.train(cfg)
  saved = json.load(open(os.path.join(run, config_lib.CONFIG_FILE)))
  assert saved["data"]["valid_split"] == "test" and saved["train"]["allow_test_validation"]


def test_an_old_run_config_that_validated_on_test_says_so():
  old = {"data": {"data_dir": "d", "eval_split": "test"}, "model": {"name": "din"},
         "train": {"run_dir": "r"}}
  cfg = config_lib.RunConfig.from_json(old)
  assert cfg.data.valid_split == "test" and cfg.train.allow_test_validation


def test_the_command_line_refusal_is_one_line_without_a_traceback(syn_dir, tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "tfrec.train", f"--data_dir={syn_dir}", "--model=youtubenet",
       f"--run_dir={tmp_path}/r", "--valid_split=test", "--model_args=dim=4"],
      capture_output=True, text=True, timeout=120, cwd=REPO,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert out.returncode != 0
  assert "Traceback" not in out.stderr
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("tfrec.train: --valid_split=test: evaluation reports"), out.stderr[-800:]


# --------------------------------------------------------------------------- in-step randomness

def test_step_dropout_masks_follow_seed_step_and_draw():
  layer = step_random.Dropout(0.5)
  x = tf.ones([4, 64])

  def masks(seed, step, draws=2):
    with step_random.training_step(seed, tf.constant(step)):
      return [layer(x, training=True).numpy() for _ in range(draws)]

  a, b = masks(1, 5), masks(1, 5)
  np.testing.assert_array_equal(a[0], b[0])  # same (seed, step, draw): same mask
  assert not np.array_equal(a[0], a[1])  # the next draw of the step differs
  assert not np.array_equal(a[0], masks(1, 6)[0])  # another step differs
  assert not np.array_equal(a[0], masks(2, 5)[0])  # another seed differs
  assert set(np.unique(a[0])) <= {0.0, 2.0}  # kept units scaled by 1 / (1 - rate)
  np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
  assert step_random.step_seed() is None  # outside a training step: Keras' own randomness


def _resume_config(syn_dir, run):
  return make_config(syn_dir, run, model="bst", model_kwargs=dict(num_heads=2, dropout=0.3),
                     steps_per_epoch=4, epochs=3, seed=3, deterministic=True,
                     backup_every_steps=2)


def _final_weights(run):
  model, *_ = runs.restore_model(run, "final")
  return [w.numpy() for w in model.weights]


# The False case (Keras' own dropout, which a backup cannot restore) documents why step seeds
# exist, not a behaviour of ours: in the slow set.
@pytest.mark.parametrize("step_seeds", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_a_run_killed_several_times_ends_with_the_uninterrupted_weights(
    syn_dir, tmp_path, monkeypatch, step_seeds):
  if not step_seeds:  # Keras' own stateful dropout: what the backup cannot restore
    monkeypatch.setattr(step_random, "step_seed", lambda: None)
  whole = str(tmp_path / "whole")
  train_lib.train(_resume_config(syn_dir, whole))
  killed = str(tmp_path / "killed")
  for at in (3, 6, 9):  # backups at even steps: resumes from 2, 6 and 8
    with pytest.raises(KeyboardInterrupt):
      train_lib.train(_resume_config(syn_dir, killed), extra_callbacks=[Kill(at)])
  result = train_lib.train(_resume_config(syn_dir, killed))
  assert result.steps == 12 and result.resumed_from_step == 8
  pairs = list(zip(_final_weights(whole), _final_weights(killed)))
  if step_seeds:
    for a, b in pairs:
      np.testing.assert_array_equal(a, b)
  else:
    assert any(not np.array_equal(a, b) for a, b in pairs)


# --------------------------------------------------------------------------- logs

def test_each_named_loss_and_its_weight_is_a_tensorboard_scalar(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  cfg = make_config(syn_dir, run, steps_per_epoch=3, validation_steps=1,
                    loss_weights={"bce": 0.5})
  result = train_lib.train(cfg)
  tags = scalars(os.path.join(config_lib.run_paths(run)["logs"], "train"))
  for tag in ("epoch_loss", "epoch_bce_loss", "epoch_bce_weight"):
    assert tag in tags, sorted(tags)
  assert [v for _, v in tags["epoch_bce_weight"]] == [0.5]
  # The total is the weighted named loss.
  np.testing.assert_allclose(result.history["loss"], 0.5 * np.array(result.history["bce_loss"]),
                             rtol=1e-5)
  assert result.best["monitor"] == "val_auc" and result.best["epoch"] == 1
  assert result.best["value"] == pytest.approx(result.history["val_auc"][0])


def test_a_bad_record_met_while_training_ends_the_command_with_one_named_line(tmp_path):
  from test_data_pipeline import _write_with_bad
  d = str(tmp_path / "ds")
  path = _write_with_bad(d, dict(label=2), bad_at=3)
  out = subprocess.run(
      [sys.executable, "-m", "tfrec.train", f"--data_dir={d}", "--model=youtubenet",
       f"--run_dir={tmp_path}/r", "--model_args=dim=4", "--validation_steps=0",
       "--batch_size=4", "--max_seq_len=10", "--verbose=0"],
      capture_output=True, text=True, timeout=120, cwd=REPO,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("tfrec.train: ") and path in last and "record 3" in last, last
  assert "label" in last


def test_stateless_dropout_drops_at_the_rate_keeps_the_mean_and_broadcasts_its_noise_shape():
  x = tf.ones([201, 501])  # an odd size: the last 32-bit word's second draw is unused
  seed = tf.constant([3, 4], tf.int64)
  out = step_random.stateless_dropout(x, 0.1, seed).numpy()
  threshold = round(0.1 * 65536)
  np.testing.assert_allclose(np.unique(out[out != 0]), [65536 / (65536 - threshold)])
  dropped = (out == 0).mean()
  assert abs(dropped - 0.1) < 4 * np.sqrt(0.1 * 0.9 / out.size)  # binomial, 4 sigma
  assert abs(out.mean() - 1.0) < 0.01  # kept units rescaled: E[out] = x
  np.testing.assert_array_equal(out, step_random.stateless_dropout(x, 0.1, seed).numpy())
  assert not np.array_equal(out, step_random.stateless_dropout(x, 0.1, seed + 1).numpy())
  rows = step_random.stateless_dropout(x, 0.5, seed, noise_shape=[201, 1]).numpy()
  assert ((rows == 0).all(axis=1) | (rows == 2.0).all(axis=1)).all()  # whole rows kept/dropped
  np.testing.assert_array_equal(step_random.stateless_dropout(x, 0.0, seed).numpy(), x.numpy())
  half = step_random.stateless_dropout(tf.ones([8], tf.bfloat16), 0.5, seed)
  assert half.dtype == tf.bfloat16
  with pytest.raises(ValueError, match=r"in \[0, 1\)"):
    step_random.stateless_dropout(x, 1.0, seed)
