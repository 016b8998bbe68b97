"""`python -m tfrec.bench retrieve` (tfrec/bench/retrieve.py): its random index and requests
(figures are printed by the command, never timed in a test); the command itself on a tiny index
is the slow test."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tfrec.bench import retrieve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_item_vectors_are_random_rows_after_a_zero_padding_row():
  v = retrieve.item_vectors(500, 8, clusters=0, seed=1)
  assert v.shape == (501, 8) and v.dtype == np.float32 and not v[0].any()
  np.testing.assert_array_equal(v, retrieve.item_vectors(500, 8, clusters=0, seed=1))
  clustered = retrieve.item_vectors(500, 8, clusters=3, seed=1)
  assert clustered.shape == (501, 8) and not clustered[0].any()


def test_requests_hold_distinct_history_items_and_k():
  reqs = retrieve.make_requests(1000, 4, seq=20, k=7, seed=0)
  for r in reqs:
    ids = r["seq_item_ids"].numpy()
    assert len(set(ids.tolist())) == 20 and ids.min() >= 1 and ids.max() <= 1000
    assert int(r["k"]) == 7 and r["seq_timestamps"].shape == [20]


@pytest.mark.slow
def test_the_command_prints_its_figures_on_a_tiny_index():
  pytest.importorskip("faiss")
  cmd = [sys.executable, "-m", "tfrec.bench", "retrieve", "--index_items=2000", "--seq=5",
         "--top_k=10", "--requests=3", "--warmup_requests=1", "--recall_requests=3",
         "--nlist=8", "--nprobe=8"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [x for x in proc.stdout.splitlines() if "nprobe 8" in x]
  assert len(lines) == 1 and lines[0].split()[-1] == "1.0000"  # every list searched: exact
  assert "search only: tfrs BruteForce" in proc.stdout


@pytest.mark.slow
def test_the_couple_bench_serves_a_tag_based_index():
  cmd = [sys.executable, "-m", "tfrec.bench", "retrieve", "--model=couple", "--index_items=600",
         "--num_tags=50", "--seq=8", "--top_k=10", "--requests=3", "--warmup_requests=1",
         "--ann=none", "--notfrs"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "COUPLE: items = mean of 10 of 50 random tags" in proc.stdout
  (line,) = [x for x in proc.stdout.splitlines() if "exact: SavedModel" in x]
  assert line.split()[-3] == "3" and line.endswith("1 (exact)")  # 3 timed requests


def test_couple_items_are_the_mean_of_their_tags():
  from absl import flags
  from tfrec.bench import retrieve
  retrieve.define_flags()
  flags.FLAGS(["bench", "--num_tags=20", "--tags_per_item=3"])
  model = retrieve.build_couple(40, 8, 4, seed=0)
  tags = model.item_encoder.item_tags.numpy()
  assert (tags[1:, :3] > 0).all() and not tags[1:, 3:].any() and not tags[0].any()
  table = model.item_encoder.tag_embeddings.numpy()
  np.testing.assert_allclose(model.encode_items(np.array([5])).numpy()[0],
                             table[tags[5, :3]].mean(axis=0), rtol=1e-5, atol=1e-6)
