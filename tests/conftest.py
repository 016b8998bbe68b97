"""Shared fixtures: a tiny hand-made dataset whose every value is known."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tfrec  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tfrec.data import schema  # noqa: E402
from tfrec.data.info import DatasetInfo  # noqa: E402
from tfrec.data.item_store import ItemStore  # noqa: E402

NUM_ITEMS = 10  # ids 1..10; 1-5 source, 6-10 target; 10 is cold.
VISUAL_DIM = 3


def tiny_info() -> DatasetInfo:
  return DatasetInfo(name="tiny/hand", num_users=5, num_items=NUM_ITEMS, num_scenarios=2,
                     num_categories=4, num_tags=6, num_tokens=9,
                     user_feature_sizes=(2, 7, 21, 10), visual_dim=VISUAL_DIM)


def tiny_store() -> ItemStore:
  n = NUM_ITEMS + 1
  domain = np.array([0] + [0] * 5 + [1] * 5)
  category = np.array([0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4])
  tags = np.zeros([n, schema.MAX_TAGS], np.int64)
  tags[1:, 0] = (np.arange(1, n) % 6) + 1
  title = np.zeros([n, schema.MAX_TITLE_LEN], np.int64)
  title[1:, :2] = (np.arange(1, n) % 9 + 1)[:, None]
  visual = np.zeros([n, VISUAL_DIM], np.float32)
  visual[1:] = np.arange(1, n)[:, None] * np.array([1.0, 10.0, 100.0], np.float32)
  cold = np.zeros(n, np.int64)
  cold[10] = 1
  return ItemStore(domain=domain, category=category, tags=tags, title=title, visual=visual,
                   cold=cold)


def ranking_record(i: int, **overrides):
  """A valid ranking record whose values are simple functions of i."""
  rec = dict(
      user_id=i % 5, user_features=[i % 2, 1, 3, i % 10], scenario_id=i % 2,
      item_id=6 + i % 4, timestamp=10_000 + i, label=i % 2,
      source_item_ids=[1 + (i + k) % 5 for k in range(i % 4 + 1)],
      source_timestamps=[100 * k for k in range(i % 4 + 1)],
      target_item_ids=[6 + k % 4 for k in range(i % 3)],
      target_timestamps=[50 * k for k in range(i % 3)],
      oracle_prob=0.25 + 0.5 * (i % 2))
  rec.update(overrides)
  return rec


@pytest.fixture
def info():
  return tiny_info()


@pytest.fixture
def store():
  return tiny_store()


@pytest.fixture
def tiny_dir(tmp_path):
  """A dataset dir with 20 ranking records in 2 shards (train) and the item store."""
  from tfrec.data.tfrecord_io import write_records
  d = str(tmp_path / "ds")
  info = tiny_info()
  info.save(d)
  tiny_store().save(d)
  write_records(d, "ranking", "train", [ranking_record(i) for i in range(20)], num_shards=2,
                info=info)
  return d


@pytest.fixture(scope="session")
def syn_dir(tmp_path_factory):
  """Tiny synthetic dataset (60 users) with 2 shards per split, so two workers can share it."""
  import dataclasses
  from tfrec.datasets import synthetic
  d = str(tmp_path_factory.mktemp("syn") / "tiny")
  cfg = dataclasses.replace(synthetic.get_config("tiny"), num_users=60)
  synthetic.generate(cfg, d, num_shards=2, verbose=False)
  return d


def make_config(data_dir, run_dir, model="youtubenet", model_kwargs=None, **train):
  """A tiny training `RunConfig` (dim 8, histories of 10, batch 32, no validation)."""
  from tfrec import config as config_lib
  kwargs = dict(dim=8)
  kwargs.update(model_kwargs or {})
  defaults = dict(batch_size=32, epochs=1, validation_steps=0, backup_every_steps=3,
                  log_every_steps=2, verbose=0, learning_rate=3e-3)
  defaults.update(train)
  return config_lib.RunConfig(
      data=config_lib.DataConfig(data_dir=data_dir, max_seq_len=10, shuffle_buffer=200),
      model=config_lib.ModelConfig(model, kwargs),
      train=config_lib.TrainConfig(run_dir=run_dir, **defaults))


SHORT_RUN = ("--steps_per_epoch=2", "--epochs=1", "--validation_steps=1", "--batch_size=64",
             "--verbose=0")


def flagfile_config(path, data_dir, run_dir, *extra):
  """The `RunConfig` of a repository flagfile as written, on `data_dir` for two short steps
  (`SHORT_RUN`); `extra` flags last. Run from the repository root (flagfiles include each other
  by repository-relative paths)."""
  from absl import flags
  from tfrec import flags as tfrec_flags
  fl = flags.FlagValues()
  tfrec_flags.define_flags(fl)
  fl(["prog", f"--flagfile={path}", f"--data_dir={data_dir}", f"--run_dir={run_dir}",
      *SHORT_RUN, *extra])
  return tfrec_flags.run_config(fl)


def assert_two_replicas_equal_one_device(result, tolerance=1e-6):
  """The common check of the *_two_replicas.py scripts (`run_two_replica_script`): 2 replicas,
  an even (2 + 2 rows) and an uneven (2 + 1) step, each moving the weights exactly as one
  device with the same loss."""
  assert result["replicas"] == 2
  even, uneven = result["steps"]
  assert even["rows_per_replica"] == [2, 2] and uneven["rows_per_replica"] == [2, 1]
  for step in (even, uneven):
    assert step["weights_moved"] > 1e-3  # SGD moved the weights...
    assert step["weights_vs_single"] < tolerance  # ...exactly as one device did
    assert abs(step["loss_multi"] - step["loss_single"]) < 1e-5


def run_two_replica_script(name):
  """Runs tests/<name> in a fresh process (logical CPUs are set before TensorFlow starts) and
  returns the JSON it prints on its last "RESULT " line."""
  import json
  import subprocess
  import sys
  tests = os.path.dirname(os.path.abspath(__file__))
  repo = os.path.dirname(tests)
  out = subprocess.run([sys.executable, os.path.join(tests, name)], capture_output=True,
                       text=True, timeout=300, cwd=repo,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                PYTHONPATH=tests + os.pathsep + repo))
  assert out.returncode == 0, out.stderr[-3000:]
  line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])
