"""`python -m tfrec.data.validate`: reports every problem with file, record and field."""

import os
import subprocess
import sys

import numpy as np

from conftest import ranking_record, tiny_info, tiny_store
from test_data_pipeline import _raw
from tfrec.data.tfrecord_io import ShardedWriter, write_records
from tfrec.data.validate import validate


def test_clean_dataset_passes(tiny_dir):
  report = validate(tiny_dir)
  assert report.ok, report.render()
  assert report.records == {"item store": 10, "ranking/train": 20}


def test_every_problem_is_reported_not_only_the_first(tmp_path):
  d = str(tmp_path)
  tiny_info().save(d)
  tiny_store().save(d)
  bad = {1: dict(label=5), 4: dict(source_item_ids=[7], source_timestamps=[1]),
         6: dict(item_id=10), 8: dict(oracle_prob=np.float32("nan"))}
  with ShardedWriter(d, "ranking", "train", 1, tiny_info()) as w:
    for i in range(10):
      if i in bad:
        w.write_serialized(_raw(ranking_record(i, **bad[i])), 0)
      else:
        w.write(ranking_record(i))
  report = validate(d)
  got = sorted((e.record, e.field) for e in report.errors)
  assert got == [(1, "label"), (4, "source_item_ids"), (6, "item_id"), (8, "oracle_prob")]
  text = report.render()
  assert "item 7 is in domain target, the field needs source" in text
  assert "cold-start item 10 appears in a train split" in text


def test_train_valid_test_splits_validate_and_valid_refuses_cold_items(tmp_path):
  d = str(tmp_path)
  tiny_info().save(d)
  tiny_store().save(d)
  for split in ("train", "valid", "test"):
    write_records(d, "ranking", split, [ranking_record(i) for i in range(4)], info=tiny_info())
  report = validate(d)
  assert report.ok, report.render()
  assert report.records == {"item store": 10, "ranking/train": 4, "ranking/valid": 4,
                            "ranking/test": 4}
  # Item 10 is cold: checkpoints are selected on valid, so it must not be there (test may).
  for split in ("valid", "test"):
    write_records(d, "ranking", split, [ranking_record(i) for i in range(3)]
                  + [ranking_record(3, item_id=10)], info=tiny_info())
  report = validate(d)
  assert [(e.record, e.field) for e in report.errors] == [(3, "item_id")]
  assert "valid-00000-of-00001.tfrecord" in report.errors[0].path
  assert "cold-start item 10 appears in a valid split" in report.render()


def test_cli_exit_codes(tiny_dir):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  ok = subprocess.run([sys.executable, "-m", "tfrec.data.validate", tiny_dir],
                      capture_output=True, text=True, env=env)
  assert ok.returncode == 0, ok.stdout + ok.stderr
  assert "OK: no problems found." in ok.stdout
  shard = os.path.join(tiny_dir, "ranking", "train-00001-of-00002.tfrecord")
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) - 5)
  bad = subprocess.run([sys.executable, "-m", "tfrec.data.validate", tiny_dir],
                       capture_output=True, text=True, env=env)
  assert bad.returncode == 1
  assert f"file {shard}" in bad.stdout and "truncated" in bad.stdout
  assert "readable records, the manifest lists 10" in bad.stdout
  # stderr: one line with the count and the first problem, no traceback.
  assert "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1].startswith(
      f"tfrec.data.validate: {tiny_dir}: 3 problem(s), listed above; the first: file {shard}: "
      f"{os.path.getsize(shard)} bytes on disk, manifest says {os.path.getsize(shard) + 5}")


def test_item_kind_out_of_range_is_reported(tmp_path):
  """A kind above dataset.json's num_item_kinds (default 0) names the item and field."""
  import dataclasses
  from tfrec.data.item_store import ItemStore
  d = str(tmp_path)
  tiny_info().save(d)
  ItemStore(**{**tiny_store().columns(), "kind": [0] * 7 + [2] + [0] * 3}).save(d)
  write_records(d, "ranking", "train", [ranking_record(i) for i in range(3)], info=tiny_info())
  report = validate(d)
  assert not report.ok and [(e.record, e.field) for e in report.errors] == [(7, "kind")]
  dataclasses.replace(tiny_info(), num_item_kinds=2).save(d)
  assert validate(d).ok
