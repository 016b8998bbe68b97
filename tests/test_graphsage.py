"""GraphSAGE for M5's CG embeddings: the pooling aggregator against numpy on a 5-node graph, the
seeded neighbour sampler, the positive-pair stream, pre-training on a planted tiny graph, and the
written embeddings (round trip, damage, CLI)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.data import schema  # noqa: E402
from tfrec.data.errors import DataError  # noqa: E402
from tfrec.data.item_store import ItemStore  # noqa: E402
from tfrec.datasets import metagraph  # noqa: E402
from tfrec.layers import step_random  # noqa: E402
from tfrec.layers.graphsage import GraphSAGEPooling, sample_neighbours  # noqa: E402
from tfrec.models import graphsage  # noqa: E402
from conftest import tiny_store  # noqa: E402
from test_layers import assert_config_round_trip  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 5 nodes: 0-1, 0-2, 1-2, 2-3; node 4 isolated.
NEIGHBOURS = {0: [1, 2], 1: [0, 2], 2: [0, 1, 3], 3: [2], 4: []}
INDPTR = np.array([0, 2, 4, 7, 8, 8], np.int64)
INDICES = np.array([1, 2, 0, 2, 0, 1, 3, 2], np.int64)


# ----------------------------------------------------------------------------- the sampler


def test_sampler_is_seeded_draws_only_real_neighbours_and_pads_isolated_nodes():
  nodes = tf.constant([0, 1, 2, 3, 4, 2], tf.int64)
  ids, mask = sample_neighbours(INDPTR, INDICES, nodes, 400, tf.constant([7, 1], tf.int64))
  again, _ = sample_neighbours(INDPTR, INDICES, nodes, 400, tf.constant([7, 1], tf.int64))
  other, _ = sample_neighbours(INDPTR, INDICES, nodes, 400, tf.constant([7, 2], tf.int64))
  np.testing.assert_array_equal(ids, again)  # stateless: the same seed, the same sample
  assert not np.array_equal(ids, other)
  ids, mask = ids.numpy(), mask.numpy()
  assert ids.shape == mask.shape == (6, 400)
  for row, node in enumerate(nodes.numpy()):
    if NEIGHBOURS[node]:
      assert mask[row].all() and set(ids[row]) == set(NEIGHBOURS[node])  # all, and only them
      share = np.bincount(ids[row], minlength=5)[NEIGHBOURS[node]] / 400
      np.testing.assert_allclose(share, 1 / len(NEIGHBOURS[node]), atol=0.1)  # uniform
    else:
      assert not mask[row].any() and not ids[row].any()  # isolated: padding, masked
  # Nested hops keep the shape: [2, 3] nodes -> [2, 3, 4].
  hop, hop_mask = sample_neighbours(INDPTR, INDICES, tf.constant([[0, 4, 3], [1, 2, 2]]), 4,
                                    tf.constant([0, 0]))
  assert hop.shape == hop_mask.shape == (2, 3, 4)
  assert not hop_mask[0, 1].numpy().any() and (hop[0, 2].numpy() == 2).all()
  # A graph without any edge samples nothing, without an out-of-range gather.
  ids, mask = sample_neighbours(np.zeros(4, np.int64), np.zeros(0, np.int64), [0, 1, 2], 3,
                                tf.constant([1, 1]))
  assert not mask.numpy().any() and not ids.numpy().any()
  with pytest.raises(ValueError, match="num_samples must be >= 1"):
    sample_neighbours(INDPTR, INDICES, nodes, 0, tf.constant([0, 0]))


# ----------------------------------------------------------------------------- the aggregator


def np_relu(x):
  return np.maximum(x, 0.0)


def np_pool_sage(x, neighbours, w_pool, b_pool, w, b, activation):
  """Hamilton et al. 2017 §3.3 by hand: h_N = max_u relu(W_pool x_u + b) (0 without
  neighbours), h = act(W [x_v; h_N] + b), h / ||h||."""
  out = []
  for v in range(len(x)):
    pooled = [np_relu(x[u] @ w_pool + b_pool) for u in neighbours[v]]
    h_n = np.max(pooled, axis=0) if pooled else np.zeros(len(b_pool))
    h = activation(np.concatenate([x[v], h_n]) @ w + b)
    norm = np.linalg.norm(h)
    out.append(h / norm if norm > 0 else h)
  return np.array(out)


@pytest.mark.parametrize("activation", ["relu", None])
def test_pooling_aggregator_against_numpy_on_a_five_node_graph(activation):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 3)).astype(np.float32)
  layer = GraphSAGEPooling(2, pool_units=4, activation=activation)
  # Every neighbour listed once, padded to 3 with garbage that the mask must hide.
  padded = np.full((5, 3), 0, np.int64)
  mask = np.zeros((5, 3), bool)
  for v, ns in NEIGHBOURS.items():
    padded[v, :len(ns)] = ns
    mask[v, :len(ns)] = True
  neigh = x[padded]
  neigh[~mask] = 1e6
  layer(x, neigh, mask)  # builds
  w_pool, b_pool = rng.normal(size=(3, 4)), rng.normal(size=4)
  w, b = rng.normal(size=(7, 2)), rng.normal(size=2)
  layer.pool.set_weights([w_pool, b_pool])
  layer.combine.set_weights([w, b])
  got = layer(x, neigh, mask).numpy()
  want = np_pool_sage(x.astype(np.float64), NEIGHBOURS, w_pool, b_pool, w, b,
                      np_relu if activation else (lambda h: h))
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert np.isfinite(got).all()
  norms = np.linalg.norm(got, axis=1)
  assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
  # Neighbour order does not matter (a max), and the neighbour axis may be nested.
  perm = layer(x, neigh[:, ::-1], mask[:, ::-1]).numpy()
  np.testing.assert_allclose(perm, got, atol=1e-6)
  nested = layer(x[None], neigh[None], mask[None]).numpy()
  np.testing.assert_allclose(nested[0], got, atol=1e-6)


def test_pooling_aggregator_config_round_trip():
  assert_config_round_trip(GraphSAGEPooling, dict(
      units=5, pool_units=3, activation="tanh", pool_activation="sigmoid", normalize=False,
      use_bias=False, kernel_initializer="he_normal"))
  with pytest.raises(ValueError, match="units and pool_units must be >= 1"):
    GraphSAGEPooling(0)


# ----------------------------------------------------------------------------- model and input


def planted_store():
  """Items 1-6 carry two of the tags 1-3, items 7-12 two of the tags 4-6; items 6 and 7 share
  the title token 1 (one bridge between the groups); item 13 has no content at all."""
  n = 14
  tags = np.zeros([n, schema.MAX_TAGS], np.int64)
  for i in range(1, 13):
    base = 0 if i <= 6 else 3
    tags[i, :2] = [base + 1 + i % 3, base + 1 + (i + 1) % 3]
  title = np.zeros([n, schema.MAX_TITLE_LEN], np.int64)
  title[6, 0] = title[7, 0] = 1
  return ItemStore(domain=np.zeros(n), category=np.zeros(n), tags=tags, title=title,
                   visual=np.zeros([n, 0], np.float32), cold=np.zeros(n))


def dataset_dir(tmp_path, store, name="ds"):
  d = str(tmp_path / name)
  store.save(d)
  metagraph.build_for_dataset(d, visual_clusters=2)
  return d


def test_pair_stream_is_stateless_and_draws_real_pairs(tmp_path):
  graph = metagraph.build_metagraph(tiny_store(), visual_clusters=0)
  degree = graph.degree()
  first = list(graphsage.pair_dataset(graph, 64, 7, walk_length=1, seed=3).take(3))
  again = list(graphsage.pair_dataset(graph, 64, 7, walk_length=1, seed=3).take(3))
  later = next(iter(graphsage.pair_dataset(graph, 64, 7, walk_length=1, seed=3, start_step=2)))
  other = next(iter(graphsage.pair_dataset(graph, 64, 7, walk_length=1, seed=4)))
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  for key in later:
    np.testing.assert_array_equal(later[key], first[2][key])  # resumes at its step
  assert not np.array_equal(other["anchor"], first[0]["anchor"])
  for batch in first:
    anchor, positive = batch["anchor"].numpy(), batch["positive"].numpy()
    assert batch["negatives"].shape == (7,) and anchor.shape == positive.shape == (64,)
    assert np.all((anchor >= 1) & (anchor <= 10))  # walks start at items
    for u, v in zip(anchor, positive):  # one step: a meta neighbour of the item
      assert v in graph.neighbours(u)
    assert np.all(degree[batch["negatives"].numpy()] > 0)  # never padding or isolated
  # Longer walks: never the anchor itself, always a node of the graph with edges.
  batch = next(iter(graphsage.pair_dataset(graph, 256, 5, walk_length=4, seed=0)))
  assert np.all(batch["positive"].numpy() != batch["anchor"].numpy())
  assert np.all(degree[batch["positive"].numpy()] > 0)
  empty = metagraph.build_metagraph(planted_store(), visual_clusters=0)
  empty.indptr[:] = 0
  empty.indices = empty.indices[:0]
  with pytest.raises(ValueError, match="links no item to a meta node"):
    graphsage.pair_dataset(empty, 8, 2)


def test_losses_and_sampling_follow_the_core_contract():
  model = graphsage.GraphSAGE(INDPTR, INDICES, dim=4, num_samples=(3, 2), num_negatives=2)
  batch = {"anchor": tf.constant([0, 2, 3]), "positive": tf.constant([1, 0, 2]),
           "negatives": tf.constant([1, 3])}
  loss = model.compute_losses(batch)["unsupervised"]
  assert loss.shape == (3,) and np.all(np.isfinite(loss))
  z = model.embed(tf.constant([0, 2, 3, 1, 0, 2, 1, 3]))
  z_u, z_v, z_n = z[:3], z[3:6], z[6:]
  softplus = lambda t: np.log1p(np.exp(t))  # noqa: E731
  want = (softplus(-np.sum(z_u * z_v, axis=1))
          + softplus(z_u.numpy() @ z_n.numpy().T).sum(axis=1))
  np.testing.assert_allclose(loss, want, rtol=1e-5)  # eq. 1, Q negatives summed
  # Outside training the neighbour samples are fixed; inside, they follow (seed, step).
  nodes = tf.constant([0, 1, 2, 3, 4])
  np.testing.assert_array_equal(model.embed(nodes), model.embed(nodes))
  steps = []
  for step in (0, 0, 1):
    with step_random.training_step(9, tf.constant(step)):
      steps.append(model.embed(nodes).numpy())
  np.testing.assert_array_equal(steps[0], steps[1])
  assert not np.allclose(steps[0], steps[2])
  assert np.all(np.isfinite(model.embed(tf.constant([4]))))  # isolated node: finite
  with pytest.raises(ValueError, match="num_samples must be a non-empty list"):
    graphsage.GraphSAGE(INDPTR, INDICES, num_samples=())


def cosine_gap(table, groups):
  """Mean cosine of items of the same group (pairs of distinct items) minus across groups."""
  z = table[1:1 + len(groups)]
  cos = z @ z.T
  same = groups[:, None] == groups[None, :]
  return cos[same & ~np.eye(len(groups), dtype=bool)].mean() - cos[~same].mean()


def test_pretraining_lowers_the_loss_and_brings_items_sharing_tags_together(tmp_path):
  d = dataset_dir(tmp_path, planted_store())
  graph = metagraph.Metagraph.load(d)
  # hidden_dim 32: at 8 a node's hidden ReLUs can all die and several items share one z
  # (1 seed in 8 on this graph).
  kwargs = dict(dim=8, hidden_dim=32, num_samples=(5, 5), num_negatives=5)
  keras.utils.set_random_seed(0)
  untrained = graphsage.item_embeddings(
      graphsage.GraphSAGE(graph.indptr, graph.indices, **kwargs), graph)
  table, settings = graphsage.pretrain_cg(d, steps=100, batch_size=32, learning_rate=0.03,
                                          log_every=10, seed=0, **kwargs)
  curve = settings["loss_curve"]
  assert len(curve) == 10 and np.mean(curve[-3:]) < curve[0] - 0.3
  groups = np.repeat([0, 1], 6)
  # Measured over seeds 0-7: the gap is 0.57-1.22 after 100 steps, 0.00-0.44 untrained (the
  # graph alone separates the groups a little), and training adds 0.54-1.14; seed 0: 0.10 ->
  # 0.97. The loss falls by 0.63-1.41 (first 10 steps vs the last 30).
  trained, before = cosine_gap(table, groups), cosine_gap(untrained, groups)
  assert trained > 0.4 and trained > before + 0.3
  assert not table[0].any() and not table[13].any()  # padding; an item without content
  np.testing.assert_allclose(np.linalg.norm(table[1:13], axis=1), 1.0, atol=1e-5)
  assert settings["items_without_meta_nodes"] == 1


def test_written_embeddings_round_trip_and_damage_is_named(tmp_path):
  store = tiny_store()
  d = dataset_dir(tmp_path, store)
  out = str(tmp_path / "out")
  table, settings = graphsage.pretrain_cg(d, out=out, dim=4, steps=25, batch_size=16,
                                          num_samples=(3, 2), num_negatives=3, log_every=10)
  assert settings["steps"] == 25 and len(settings["loss_curve"]) == 3  # 10 + 10 + 5 steps
  assert sorted(os.listdir(out)) == [graphsage.EMBEDDINGS_INFO, graphsage.EMBEDDINGS_FILE]
  loaded, info = graphsage.load_cg_embeddings(out, num_items=store.num_items)
  np.testing.assert_array_equal(loaded, table)
  assert loaded.shape == (11, 4) and loaded.dtype == np.float32 and not loaded[0].any()
  assert info["metagraph_params"]["visual_clusters"] == 2 and info["shape"] == [11, 4]
  with pytest.raises(DataError, match="12 items .*belong to another item store"):
    graphsage.load_cg_embeddings(out, num_items=12)
  path = os.path.join(out, graphsage.EMBEDDINGS_FILE)
  np.save(path, loaded * 2)
  with pytest.raises(DataError, match=r"cg_embeddings\.npy: size or sha256 differs"):
    graphsage.load_cg_embeddings(out)
  os.remove(path)
  with pytest.raises(DataError, match="missing CG embeddings: pre-train them with"):
    graphsage.load_cg_embeddings(out)
  os.remove(os.path.join(out, graphsage.EMBEDDINGS_INFO))
  with pytest.raises(DataError, match="missing CG embedding settings"):
    graphsage.load_cg_embeddings(out)
  # No metagraph, or one built from other content: named before any training.
  bare = str(tmp_path / "bare")
  store.save(bare)
  with pytest.raises(DataError, match="missing metagraph manifest: build it with"):
    graphsage.pretrain_cg(bare, steps=1)
  metagraph.build_metagraph(planted_store()).save(bare)
  with pytest.raises(DataError, match="other item content"):
    graphsage.pretrain_cg(bare, steps=1)


def test_cli_writes_the_table_beside_the_dataset(tmp_path):
  d = dataset_dir(tmp_path, tiny_store())
  done = subprocess.run(
      [sys.executable, "-m", "tfrec.models.graphsage", f"--data_dir={d}", "--dim=4",
       "--steps=4", "--batch_size=8", "--num_samples=2,2", "--num_negatives=2",
       "--log_every=2"], cwd=REPO, capture_output=True, text=True, timeout=180,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert done.returncode == 0, done.stderr[-2000:]
  assert "cg_embeddings.npy [11, 4]; loss" in done.stdout
  table, info = graphsage.load_cg_embeddings(d, num_items=10)
  assert info["steps"] == 4 and info["num_samples"] == [2, 2]
  with open(os.path.join(d, graphsage.EMBEDDINGS_INFO)) as f:
    assert json.load(f)["sha256"] == info["sha256"]
