"""Generator -> shards -> validate -> tf.data reader, for every record kind and split."""

import subprocess
import sys

import numpy as np
import pytest

from tfrec.data import schema
from tfrec.datasets import synthetic
from tfrec.data.pipeline import Reader, ReadOptions
from tfrec.data.validate import shard_sets, validate


@pytest.fixture(scope="module")
def syn_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("syn"))
  synthetic.generate(synthetic.get_config("tiny"), d, num_shards=2, verbose=False)
  return d


def test_generated_dataset_validates(syn_dir):
  report = validate(syn_dir)
  assert report.ok, report.render()
  assert set(report.records) == {"ranking/train", "ranking/valid", "ranking/test",
                                 "ranking/test_cold", "ccl_pair/train", "dual_pair/train",
                                 "dual_pair/valid", "dual_pair/test", "matching/train",
                                 "matching/valid", "matching/test", "matching/test_cold",
                                 "item store"}
  assert report.records["ranking/valid"] > 0 and report.records["matching/valid"] > 0


@pytest.mark.parametrize("kind", schema.EXAMPLE_KINDS)
def test_reader_reads_every_record_of_every_split(syn_dir, kind):
  for k, split in shard_sets(syn_dir):
    if k != kind:
      continue
    reader = Reader(syn_dir, kind, split, ReadOptions(lookup=("category", "visual")))
    n = 0
    for batch in reader.dataset(batch_size=512):
      n += int(batch[schema.get_kind(kind).fields[0].name].shape[0])
      for f in schema.get_kind(kind).fields:
        if f.is_seq and not f.aligned_with:
          mask = batch[schema.mask_name(f.name)].numpy()
          ids = batch[f.name].numpy()
          assert np.all((ids != 0) == mask), f.name  # real ids are >= 1, padding is 0
      if kind == "matching":
        assert batch["seq_subsidiary"].shape[1:] == (schema.MAX_MATCH_SEQ_LEN, 2)
        assert batch["seq_item_visual"].shape[-1] == 64  # tiny preset's visual_dim
    assert n == reader.num_records > 0, (kind, split)


def test_keras3_already_bound_is_refused():
  code = "import tensorflow as tf; tf.keras.layers; import tfrec"
  env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""}
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
  assert out.returncode != 0 and "bound to Keras 3" in out.stderr
  ok = subprocess.run([sys.executable, "-c", "import tfrec, tensorflow as tf; "
                       "print(tf.keras.__name__)"], capture_output=True, text=True, env=env)
  assert ok.returncode == 0 and ok.stdout.startswith("tf_keras"), ok.stderr
