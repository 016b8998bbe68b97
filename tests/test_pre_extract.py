"""SEMI's inputs as the paper has them (issue 15 item 2): frozen pre-extracted item vectors from
one extractor per domain (`tfrec.datasets.pre_extract`), read as they are by the item encoder's
"pre_extracted" feature, and dropout only after SEMI's final MLP (`attention_dropout=0`)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.item_store import ItemStore
from tfrec.datasets import pre_extract
from tfrec.layers.item_encoder import ItemEncoder
from test_models import DIM, as_tf, build, make_features, small_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def store_with_content(seed=0, n_source=30, n_target=20, visual_dim=6):
  """Items 1..n_source source, the rest target; random visual vectors, categories, titles."""
  from tfrec.data import schema
  rng = np.random.default_rng(seed)
  n = n_source + n_target + 1
  domain = np.r_[0, np.zeros(n_source), np.ones(n_target)]
  title = np.zeros([n, schema.MAX_TITLE_LEN], np.int64)
  title[1:, :3] = rng.integers(1, 9, size=(n - 1, 3))
  visual = np.r_[np.zeros([1, visual_dim]), rng.normal(size=(n - 1, visual_dim))]
  return ItemStore(domain=domain, category=np.r_[0, rng.integers(1, 5, size=n - 1)],
                   tags=np.zeros([n, schema.MAX_TAGS]), title=title,
                   visual=visual.astype(np.float32), cold=np.zeros(n))


def test_each_domain_is_the_principal_components_of_its_own_content():
  store = store_with_content()
  stats = pre_extract.pre_extract(store, dim=4)
  z = store.pre_extracted
  assert z.shape == (51, 4) and not z[0].any()  # row 0: the padding item
  assert stats["domains"][0]["items"] == 30 and stats["domains"][1]["items"] == 20
  for items in (store.item_ids(domain=0), store.item_ids(domain=1)):
    zd = z[items].astype(np.float64)
    # Principal components: centred, uncorrelated, in decreasing variance, mean |z|^2 = 1.
    np.testing.assert_allclose(zd.mean(axis=0), 0.0, atol=1e-5)
    cov = zd.T @ zd
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-4)
    assert np.all(np.diff(np.diag(cov)) <= 1e-6)
    assert np.mean(np.sum(zd ** 2, axis=1)) == pytest.approx(1.0, rel=1e-5)
  # The same components as numpy's SVD of the blocks built by hand (target domain, visual
  # only): up to each component's sign.
  alone = store_with_content()
  pre_extract.pre_extract(alone, dim=3, features=["visual"])
  items = alone.item_ids(domain=1)
  v = alone.visual[items].astype(np.float64)
  x = (v - v.mean(0)) / v.std(0)
  x /= np.sqrt((x ** 2).sum() / len(items))
  u, s, _ = np.linalg.svd(x, full_matrices=False)
  want = u[:, :3] * s[:3]
  want /= np.sqrt(np.mean(np.sum(want ** 2, axis=1)))
  np.testing.assert_allclose(np.abs(alone.pre_extracted[items]), np.abs(want), atol=1e-5)


def test_one_domains_content_never_moves_the_other_domains_vectors():
  a, b = store_with_content(), store_with_content()
  source = b.item_ids(domain=0)
  b.visual[source] = np.random.default_rng(9).normal(size=b.visual[source].shape)
  b.category[source] = 1
  pre_extract.pre_extract(a, dim=4)
  pre_extract.pre_extract(b, dim=4)
  target = a.item_ids(domain=1)
  np.testing.assert_array_equal(a.pre_extracted[target], b.pre_extracted[target])
  assert not np.allclose(a.pre_extracted[source], b.pre_extracted[source])


def test_bad_requests_are_refused():
  store = store_with_content()
  with pytest.raises(ValueError, match="--dim must be >= 1"):
    pre_extract.pre_extract(store, dim=0)
  with pytest.raises(ValueError, match=r"unknown --features \['frames'\]"):
    pre_extract.pre_extract(store, dim=2, features=["frames"])
  store.visual = np.zeros([51, 0], np.float32)
  store.title[:] = 0
  with pytest.raises(ValueError, match="no content to extract from"):
    pre_extract.pre_extract(store, dim=2, features=["visual", "title"])


def test_the_item_encoder_reads_the_vectors_as_they_are_and_learns_nothing():
  store = store_with_content()
  pre_extract.pre_extract(store, dim=4)
  enc = ItemEncoder(store.num_items, 4, ("pre_extracted",), pre_extracted_dim=4)
  enc(tf.constant([1]))
  enc.set_item_features(store)
  assert not enc.trainable_weights
  ids = np.array([[3, 40], [0, 7]])
  np.testing.assert_array_equal(enc(tf.constant(ids)).numpy(), store.pre_extracted[ids])
  with pytest.raises(ValueError, match="the store's vectors are 0 wide .* needs 4"):
    ItemEncoder(store.num_items, 4, ("pre_extracted",))
  with pytest.raises(ValueError, match="needs 2"):  # concat: each part dim / 2 wide
    ItemEncoder(store.num_items, 4, ("pre_extracted", "category"), num_categories=4,
                pre_extracted_dim=4, combine="concat")


def test_store_round_trip_and_old_stores_without_the_column(tmp_path):
  store = store_with_content()
  pre_extract.pre_extract(store, dim=3)
  store.save(str(tmp_path))
  back = ItemStore.load(str(tmp_path))
  np.testing.assert_array_equal(back.pre_extracted, store.pre_extracted)
  back.validate()
  old = store_with_content()  # never extracted: 0 wide
  assert old.pre_extracted_dim == 0 and old.pre_extracted.shape == (51, 0)


def test_semi_on_pre_extracted_items_with_dropout_only_after_the_mlp():
  store = small_store()
  pre_extract.pre_extract(store, dim=DIM)

  def semi(dropout, attention_dropout):
    return build("semi", store=store, num_heads=2, ff_dim=8, item_features=("pre_extracted",),
                 pre_extracted_dim=DIM, dropout=dropout, attention_dropout=attention_dropout)

  model = semi(0.5, 0.0)  # A.1: dropout 0.1 after the final MLP only
  assert model.block_dropout == 0.0
  for block in (model.target_encoder, model.source_encoder, model.inter_block):
    assert block.get_config()["dropout"] == 0.0
  assert not model.item_encoder.trainable_weights
  config = model.get_config()
  assert config["attention_dropout"] == 0.0 and config["pre_extracted_dim"] == DIM
  f = as_tf(make_features(seed=1))
  # No dropout anywhere: training and inference agree; attention dropout alone: they differ.
  quiet = semi(0.0, 0.0)
  np.testing.assert_allclose(quiet(f, training=True).numpy(), quiet(f, training=False).numpy(),
                             rtol=1e-5, atol=1e-6)
  blocks_only = semi(0.0, 0.5)
  assert blocks_only.target_encoder.get_config()["dropout"] == 0.5
  assert not np.allclose(blocks_only(f, training=True).numpy(),
                         blocks_only(f, training=False).numpy())


def test_cli_writes_the_column_and_its_statistics(tmp_path):
  store_with_content().save(str(tmp_path))
  subprocess.run([sys.executable, "-m", "tfrec.datasets.pre_extract",
                  f"--data_dir={tmp_path}", "--dim=5"], check=True, cwd=REPO,
                 capture_output=True)
  assert ItemStore.load(str(tmp_path)).pre_extracted_dim == 5
  assert os.path.exists(tmp_path / pre_extract.STATS_FILE)
  bad = subprocess.run([sys.executable, "-m", "tfrec.datasets.pre_extract",
                        f"--data_dir={tmp_path}", "--dim=0"], cwd=REPO, capture_output=True,
                       text=True)
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1] == (
      "tfrec.datasets.pre_extract: --dim must be >= 1, got 0")


def test_the_semi_reproduction_writes_the_vectors_of_its_scale_once(syn_dir, tmp_path):
  import shutil
  from tfrec.reproduce import semi
  data = str(tmp_path / "syn")
  shutil.copytree(syn_dir, data)
  scale = semi.SCALES["cpu"]
  semi.prepare(data, scale)
  first = ItemStore.load(data)
  assert first.pre_extracted_dim == scale.dim == 32
  mtime = os.path.getmtime(os.path.join(data, "items.npz"))
  semi.prepare(data, scale)  # already there: the store is left alone
  assert os.path.getmtime(os.path.join(data, "items.npz")) == mtime
  # The columns the store had are unchanged.
  before = ItemStore.load(syn_dir)
  np.testing.assert_array_equal(first.visual, before.visual)
  np.testing.assert_array_equal(first.category, before.category)
