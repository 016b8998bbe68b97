"""M5's content metagraph (`tfrec.datasets.metagraph`): exact nodes and edges of the hand-made
tiny store, the visual k-means, the files (round trip, damage, staleness) and the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrec.data.errors import DataError
from tfrec.datasets import metagraph
from tfrec.datasets.metagraph import Metagraph, build_metagraph
from conftest import tiny_info, tiny_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# tiny_store(): item i (1..10) has tag i % 6 + 1, category [1,1,2,2,3,3,3,4,4,4][i - 1] and the
# title token i % 9 + 1 twice. Blocks: items 0..10, tags 1..6 -> 11..16, categories 1..4 ->
# 17..20, title tokens 1..9 -> 21..29, no visual node (visual_clusters=0).
TINY_OFFSETS = {"item": 0, "tag": 11, "category": 17, "title": 21, "visual": 30}
TINY_COUNTS = {"item": 11, "tag": 6, "category": 4, "title": 9, "visual": 0}
TINY_ITEM_NEIGHBOURS = {
    1: [12, 17, 22], 2: [13, 17, 23], 3: [14, 18, 24], 4: [15, 18, 25], 5: [16, 19, 26],
    6: [11, 19, 27], 7: [12, 19, 28], 8: [13, 20, 29], 9: [14, 20, 21], 10: [15, 20, 22]}


def test_tiny_store_nodes_and_edges_exactly():
  graph = build_metagraph(tiny_store(), visual_clusters=0)
  assert graph.offsets == TINY_OFFSETS and graph.counts == TINY_COUNTS
  assert graph.num_nodes == 30 and graph.num_items == 10
  assert graph.num_edges == 30  # the repeated title token links once
  want = {v: [] for v in range(30)}
  for item, metas in TINY_ITEM_NEIGHBOURS.items():
    want[item] = metas
    for meta in metas:
      want[meta].append(item)
  for v in range(30):
    assert graph.neighbours(v).tolist() == sorted(want[v]), v
  assert graph.neighbours(0).size == 0  # the padding item is isolated
  assert graph.node("tag", [1, 6]).tolist() == [11, 16]
  assert graph.node("title", 9) == 29 and graph.node("item", 4) == 4
  assert graph.node_types().tolist() == [0] * 11 + [1] * 6 + [2] * 4 + [3] * 9
  with pytest.raises(ValueError, match="outside the block"):
    graph.node("category", 5)


def test_block_sizes_follow_the_vocabularies_when_given():
  info = tiny_info()
  sizes = {"tag": 8, "category": info.num_categories, "title": info.num_tokens}
  graph = build_metagraph(tiny_store(), visual_clusters=0, sizes=sizes)
  assert graph.counts["tag"] == 8 and graph.offsets["category"] == 19
  assert graph.degree()[graph.node("tag", [7, 8])].tolist() == [0, 0]  # unused ids: isolated
  assert graph.neighbours(1).tolist() == [12, 19, 24]
  with pytest.raises(ValueError, match="uses tag id 6 but the vocabulary has 5"):
    build_metagraph(tiny_store(), visual_clusters=0, sizes=dict(sizes, tag=5))
  with pytest.raises(ValueError, match="--visual_clusters must be >= 0"):
    build_metagraph(tiny_store(), visual_clusters=-1)


def planted_visual_store():
  """tiny_store() whose items 1-4 sit near (0, 0), 5-10 near (10, 10) (2-d visual)."""
  store = tiny_store()
  rng = np.random.default_rng(3)
  visual = np.zeros((11, 2), np.float32)
  visual[1:5] = rng.normal(0.0, 0.1, (4, 2))
  visual[5:] = 10.0 + rng.normal(0.0, 0.1, (6, 2))
  store.visual = visual
  return store


def test_visual_clusters_link_each_item_to_its_cluster():
  store = planted_visual_store()
  graph = build_metagraph(store, visual_clusters=2, seed=5)
  assert graph.offsets["visual"] == 30 and graph.counts["visual"] == 2
  # Clusters are numbered by their first item: items 1-4 -> node 30, 5-10 -> node 31.
  assert graph.neighbours(30).tolist() == [1, 2, 3, 4]
  assert graph.neighbours(31).tolist() == [5, 6, 7, 8, 9, 10]
  np.testing.assert_allclose(graph.visual_centres[0], store.visual[1:5].mean(0), atol=1e-5)
  np.testing.assert_allclose(graph.visual_centres[1], store.visual[5:].mean(0), atol=1e-5)
  assert graph.neighbours(1).tolist() == TINY_ITEM_NEIGHBOURS[1] + [30]
  # Seeded: the same seed gives the same graph; k beyond the distinct points gives fewer.
  again = build_metagraph(store, visual_clusters=2, seed=5)
  np.testing.assert_array_equal(graph.indices, again.indices)
  store.visual[1:] = 1.0
  assert build_metagraph(store, visual_clusters=4).counts["visual"] == 1
  # No visual columns (MovieLens) or no clusters asked: no visual block.
  assert build_metagraph(tiny_store(), visual_clusters=0).counts["visual"] == 0
  flat = tiny_store()
  flat.visual = np.zeros((11, 0), np.float32)
  assert build_metagraph(flat, visual_clusters=8).counts["visual"] == 0


def test_kmeans_against_lloyd_by_hand():
  x = np.array([[0.0], [1.0], [9.0], [10.0], [11.0]])
  labels, centres = metagraph.kmeans(x, 2, seed=0)
  assert labels.tolist() == [0, 0, 1, 1, 1]
  np.testing.assert_allclose(centres[:, 0], [0.5, 10.0])


def test_files_round_trip_atomically(tmp_path):
  d = str(tmp_path)
  store = planted_visual_store()
  store.save(d)
  graph = build_metagraph(store, visual_clusters=2)
  graph.save(d)
  assert sorted(os.listdir(d)) == ["items.manifest.json", "items.npz",
                                   metagraph.GRAPH_MANIFEST, metagraph.GRAPH_FILE]
  loaded = Metagraph.load(d, store=store)
  np.testing.assert_array_equal(loaded.indptr, graph.indptr)
  np.testing.assert_array_equal(loaded.indices, graph.indices)
  np.testing.assert_array_equal(loaded.visual_centres, graph.visual_centres)
  assert loaded.offsets == graph.offsets and loaded.counts == graph.counts
  assert loaded.params == graph.params
  with open(os.path.join(d, metagraph.GRAPH_MANIFEST)) as f:
    manifest = json.load(f)
  assert manifest["offsets"]["visual"] == 30 and manifest["params"]["visual_clusters"] == 2
  # Another column of the store (SEMI's pre_extracted) leaves the graph valid ...
  store.pre_extracted = np.ones((11, 2), np.float32)
  store.pre_extracted[0] = 0
  Metagraph.load(d, store=store)
  # ... other content does not.
  store.tags[3, 1] = 2
  with pytest.raises(DataError, match="other item content"):
    Metagraph.load(d, store=store)


def test_damaged_or_missing_files_are_named(tmp_path):
  d = str(tmp_path)
  with pytest.raises(DataError, match="missing metagraph manifest: build it with python -m "
                     "tfrec.datasets.metagraph"):
    Metagraph.load(d)
  build_metagraph(tiny_store(), visual_clusters=0).save(d)
  path = os.path.join(d, metagraph.GRAPH_FILE)
  raw = bytearray(open(path, "rb").read())
  raw[len(raw) // 2] ^= 0xFF
  open(path, "wb").write(bytes(raw))
  with pytest.raises(DataError, match=r"metagraph\.npz: size or sha256 differs"):
    Metagraph.load(d)
  os.remove(path)
  with pytest.raises(DataError, match=r"metagraph\.npz: missing metagraph"):
    Metagraph.load(d)
  with open(os.path.join(d, metagraph.GRAPH_MANIFEST), "w") as f:
    f.write("{not json")
  open(path, "wb").write(b"x")
  with pytest.raises(DataError, match="unreadable metagraph manifest"):
    Metagraph.load(d)
  # A consistent file whose adjacency is broken (an edge stored one way) is refused too.
  graph = build_metagraph(tiny_store(), visual_clusters=0)
  graph.indices = graph.indices.copy()
  graph.indices[0] = 13  # item 1's tag 2 (node 12) replaced one way only
  with pytest.raises(DataError, match="not symmetric"):
    graph.check()


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", "tfrec.datasets.metagraph", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


def test_cli_writes_the_graph_and_ends_bad_input_in_one_line(tmp_path):
  d = str(tmp_path)
  tiny_info().save(d)
  planted_visual_store().save(d)
  done = run_cli(f"--data_dir={d}", "--visual_clusters=2")
  assert done.returncode == 0, done.stderr
  assert "metagraph: 32 nodes, 40 item-meta edges" in done.stdout
  graph = Metagraph.load(d)
  assert graph.counts == dict(TINY_COUNTS, visual=2)
  assert graph.params["sizes"] == "given"
  bad = run_cli(f"--data_dir={d}", "--visual_clusters=-3")
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1] == (
      "tfrec.datasets.metagraph: --visual_clusters must be >= 0, got -3")
  empty = run_cli(f"--data_dir={tmp_path / 'nothing'}")
  assert empty.returncode == 1
  assert empty.stderr.strip().splitlines()[-1].endswith("missing item feature store")
