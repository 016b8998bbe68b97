"""Retrieval serving latency: one request's top-k over a large index, exact and approximate.

    python -m tfrec.bench retrieve [--index_items=1000000] [--index_dim=64] [--top_k=100]
        [--requests=200] [--warmup_requests=10] [--seq=50] [--ann=ivf|hnsw|none]
        [--nlist=1024] [--nprobe=16,64,256] [--ef_search=64,256] [--clusters=0] [--tfrs]
        [--model=youtube_dnn|couple] [--num_tags=10000]

`--model=couple`: a COUPLE model (random weights, COUPLE's sizes: one attention block of 4
heads, the frequency encoder over the history's tags, the 1-32-512 memory tree) whose items
are the mean of `--tags_per_item` random tags of `--num_tags` (the index: every item's
tag-mean vector, so the vectors come from the tag table, not `--clusters`); its requests read
each history item's tags from the export's tag table (COUPLE's history: --seq=8).

A YouTube DNN (item tower = an id embedding, query tower = MLP of the mean history item; random
weights) whose `index_items` item vectors are random (i.i.d. normal, or a mixture of
`--clusters` Gaussians: learnt embeddings are clustered, random ones are the hard case) is
exported with `tfrec.serving.export` to a temporary directory and loaded back with
`tf.saved_model.load`, as a serving process would. Requests cycle through 16 random users
(`seq` random history items, which the results leave out). After `--warmup_requests` untimed
requests, the paths take turns per request:

  * exact: the SavedModel's `retrieve` signature (request checks, query tower, a matvec
    over every index vector, top-k): what TensorFlow Serving would answer;
  * approximate: the SavedModel's `encode_query` signature, then a Faiss search
    (`tfrec.serving.ann`; IVF-Flat with each `--nprobe`, or HNSW with each `--ef_search`),
    the history items left out, merged in numpy;
  * (--tfrs) index search only, no request: our matvec + top_k in a `tf.function` against
    tensorflow_recommenders' `factorized_top_k.BruteForce` on the same vectors.

recall@k of each approximate setting = |approximate top-k ∩ exact top-k| / k, averaged over
`--recall_requests` other random requests (exact = the `retrieve` signature). Latency is per
request, from the Python call to the ids in numpy (no RPC). Figures, never a test: the machine
may be shared (say so when reporting them).
"""

from __future__ import annotations

import os
import tempfile
import time
import types
from typing import Any, Callable, Dict, List

from absl import flags
import numpy as np
import tensorflow as tf

from tfrec import serving as export_lib
from tfrec.bench import common
from tfrec.models.youtube_dnn import YouTubeDNN

FLAGS = flags.FLAGS


def define_flags() -> None:
  """This bench's flags, defined when it runs (not at import: `tfrec.flags` defines `seed`
  too, and a process that imports both, such as a test session, must not define it twice)."""
  common.define("integer", "index_items", 1_000_000, "Items in the retrieval index.")
  common.define("integer", "index_dim", 64, "Width d of the item and query vectors.")
  common.define("integer", "top_k", 100, "k of each request.")
  common.define("integer", "requests", 200, "Timed requests (of each path).")
  common.define("integer", "warmup_requests", 10, "Untimed requests of each kind first.")
  common.define("integer", "recall_requests", 200, "Requests recall@k is averaged over.")
  common.define("integer", "seq", 50, "History items per request.")
  common.define("integer", "seed", 0, "Seed of the vectors, weights and requests.")
  common.define("enum", "ann", "ivf", "Approximate index (Faiss): ivf, hnsw or none.",
                enum_values=["ivf", "hnsw", "none"])
  common.define("integer", "nlist", 1024, "IVF lists (0: tfrec.serving.ann.default_nlist).")
  common.define("list", "nprobe", ["16", "64", "256"], "IVF lists searched, one row each.")
  common.define("list", "ef_search", ["64", "256"], "HNSW search breadth, one row each.")
  common.define("integer", "hnsw_m", 32, "HNSW links per node.")
  common.define("integer", "clusters", 0, "0: i.i.d. normal item vectors; > 0: a mixture of "
                "that many Gaussian clusters.")
  common.define("bool", "tfrs", True, "Also time tensorflow_recommenders' BruteForce (search "
                "only, in memory) against ours on the same vectors.")
  common.define("enum", "model", "youtube_dnn", "The exported model: youtube_dnn (an id "
                "embedding per item) or couple (items from their tags).",
                enum_values=["youtube_dnn", "couple"])
  common.define("integer", "num_tags", 10_000, "couple: the tag vocabulary.")
  common.define("integer", "tags_per_item", 10, "couple: tags per item (Amazon: n = 10).")


def item_vectors(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
  """<float32>[n + 1, d]: row 0 (padding) zeros, then random item vectors (module docstring)."""
  rng = np.random.default_rng(seed)
  if clusters > 0:
    centres = rng.normal(size=[clusters, d]).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=[n, d])
  else:
    vectors = rng.normal(size=[n, d])
  return np.r_[np.zeros([1, d]), vectors / np.sqrt(d)].astype(np.float32)


def build_model(n: int, d: int, seq: int, clusters: int, seed: int) -> YouTubeDNN:
  tf.random.set_seed(seed)
  model = YouTubeDNN(n, dim=d, item_features=("id",), max_seq_len=seq, mlp_units=(d,))
  model.build_and_fill(types.SimpleNamespace(num_items=n))  # "id" only: no store columns
  model.item_encoder.id_embeddings.assign(item_vectors(n, d, clusters, seed))
  return model


def build_couple(n: int, d: int, seq: int, seed: int):
  """A COUPLE model over `n` target items with random tags (module docstring), built and
  filled, random weights."""
  from tfrec.data import schema  # pylint: disable=import-outside-toplevel
  from tfrec.data.item_store import ItemStore  # pylint: disable=import-outside-toplevel
  from tfrec.models.couple import COUPLE  # pylint: disable=import-outside-toplevel
  tf.random.set_seed(seed)
  rng = np.random.default_rng(seed)
  per = min(FLAGS.tags_per_item, schema.MAX_TAGS)
  tags = np.zeros([n + 1, schema.MAX_TAGS], np.int64)
  tags[1:, :per] = rng.integers(1, FLAGS.num_tags + 1, [n, per])
  store = ItemStore(domain=np.r_[0, np.ones(n, np.int64)], category=np.zeros(n + 1, np.int64),
                    tags=tags, title=np.zeros([n + 1, 1], np.int64),
                    visual=np.zeros([n + 1, 0], np.float32), cold=np.zeros(n + 1, np.int64))
  model = COUPLE(n, dim=d, num_tags=FLAGS.num_tags, max_seq_len=seq, negatives="in_batch")
  model.build_and_fill(store)
  ids = tf.constant(rng.choice(n, [1, seq], replace=False) + 1, tf.int64)
  model({"seq_item_ids": ids, "seq_mask": ids > 0, "seq_domain_ids": tf.ones_like(ids)})
  return model


def make_requests(n: int, count: int, seq: int, k: int, seed: int) -> List[Dict[str, tf.Tensor]]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    ids = rng.choice(n, seq, replace=False) + 1
    out.append({"timestamp": tf.constant(10**9, tf.int64), "k": tf.constant(k, tf.int32),
                "seq_item_ids": tf.constant(ids, tf.int64),
                "seq_domain_ids": tf.ones([seq], tf.int64),
                "seq_timestamps": tf.range(seq, dtype=tf.int64)})
  return out


def _without_k(request: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  return {name: v for name, v in request.items() if name != "k"}


def percentiles(ms: List[float]) -> Dict[str, float]:
  return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
          "n": len(ms)}


def timed(fn: Callable[[], Any]) -> float:
  start = time.perf_counter()
  fn()
  return 1000.0 * (time.perf_counter() - start)


def approximate_paths(loaded, ids: np.ndarray, vectors: np.ndarray, k: int
                      ) -> Dict[str, Callable[[Dict[str, tf.Tensor]], np.ndarray]]:
  """label -> request -> top-k ids through encode_query + a Faiss index, one per setting."""
  if FLAGS.ann == "none":
    return {}
  from tfrec.serving import ann  # pylint: disable=import-outside-toplevel (faiss: optional)
  encode = loaded.signatures["encode_query"]
  start = time.perf_counter()
  if FLAGS.ann == "ivf":
    index = ann.make_index(vectors, "ivf", nlist=FLAGS.nlist or None, seed=FLAGS.seed)
    settings = [("nprobe", int(v)) for v in FLAGS.nprobe]
    name = f"IVF-Flat, nlist {index.nlist}"
  else:
    index = ann.make_index(vectors, "hnsw", hnsw_m=FLAGS.hnsw_m)
    settings = [("efSearch", int(v)) for v in FLAGS.ef_search]
    name = f"HNSW-Flat, M {FLAGS.hnsw_m}"
  print(f"  ({name} built in {time.perf_counter() - start:.1f} s, not timed)")
  search = ann.ApproximateIndex(index, ids)
  paths = {}
  for attr, value in settings:
    def path(request, attr=attr, value=value):
      if attr == "nprobe":
        index.nprobe = value
      else:
        index.hnsw.efSearch = value
      query = encode(**_without_k(request))["query"].numpy()
      return search.search(query, k, exclude=request["seq_item_ids"].numpy())[0]
    paths[f"approximate: encode_query + {name}, {attr} {value}"] = path
  return paths


def search_only_paths(vectors: tf.Variable, ids: tf.Variable, k: int
                      ) -> Dict[str, Callable[[tf.Tensor], Any]]:
  """Our matvec + top_k and TFRS' BruteForce, both on a query vector in a tf.function."""
  import tensorflow_recommenders as tfrs  # pylint: disable=import-outside-toplevel

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
  def ours(query):
    top = tf.math.top_k(tf.linalg.matvec(vectors, query), k=k)
    return tf.gather(ids, top.indices)

  brute = tfrs.layers.factorized_top_k.BruteForce(k=k)
  brute.index(vectors, ids)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
  def tfrs_brute(query):
    return brute(query[None])[1][0]

  return {"search only: matvec + top_k (ours, tf.function)": ours,
          "search only: tfrs BruteForce (tf.function)": tfrs_brute}


def main(argv) -> None:
  common.check_no_arguments(argv)
  n, d, k, seq = FLAGS.index_items, FLAGS.index_dim, FLAGS.top_k, FLAGS.seq
  if not 1 <= k <= n - seq:
    raise ValueError(f"--top_k={k} must be in [1, --index_items - --seq]")
  start = time.perf_counter()
  model = (build_couple(n, d, seq, FLAGS.seed) if FLAGS.model == "couple"
           else build_model(n, d, seq, FLAGS.clusters, FLAGS.seed))
  with tempfile.TemporaryDirectory(prefix="tfrec_bench_retrieve_") as tmp:
    path = export_lib.export(model, os.path.join(tmp, "1"))
    setup = time.perf_counter() - start
    del model
    loaded = tf.saved_model.load(path)
    retrieve = loaded.signatures["retrieve"]
    ids, vectors = loaded.index_ids.numpy(), loaded.index_vectors.numpy()
    vectors_text = (f"COUPLE: items = mean of {FLAGS.tags_per_item} of {FLAGS.num_tags:,} "
                    "random tags" if FLAGS.model == "couple" else
                    "i.i.d. normal" if FLAGS.clusters <= 0 else f"{FLAGS.clusters} clusters")
    print(f"retrieval latency: top-{k} of {n:,} items, d={d} ({vectors_text}), "
          f"history {seq}; SavedModel loaded with tf.saved_model.load; TF {tf.__version__}, "
          f"{os.cpu_count()} CPU cores (build + export {setup:.1f} s, not timed)")
    paths: Dict[str, Callable] = {"exact: SavedModel `retrieve` (matvec + top_k)":
                                  lambda r: retrieve(**r)["item_ids"].numpy()}
    approx = approximate_paths(loaded, ids, vectors, k)
    paths.update(approx)
    requests = make_requests(n, 16, seq, k, FLAGS.seed + 1)
    for i in range(FLAGS.warmup_requests):
      for fn in paths.values():
        fn(requests[i % len(requests)])
    times: Dict[str, List[float]] = {label: [] for label in paths}
    for i in range(FLAGS.requests):
      for label, fn in paths.items():
        times[label].append(timed(lambda fn=fn: fn(requests[i % len(requests)])))
    recall = {}
    if approx:
      others = make_requests(n, FLAGS.recall_requests, seq, k, FLAGS.seed + 2)
      exact = [retrieve(**r)["item_ids"].numpy() for r in others]
      for label, fn in approx.items():
        recall[label] = float(np.mean([len(np.intersect1d(fn(r), e)) / k
                                       for r, e in zip(others, exact)]))
    if FLAGS.tfrs:
      queries = [loaded.signatures["encode_query"](**_without_k(r))["query"] for r in requests]
      search = search_only_paths(loaded.index_vectors, loaded.index_ids, k)
      first = [fn(queries[0]).numpy() for fn in search.values()]
      assert set(first[0].tolist()) == set(first[1].tolist())  # the same top-k
      for label in search:
        times[label] = []
      for i in range(FLAGS.warmup_requests + FLAGS.requests):
        for label, fn in search.items():
          ms = timed(lambda fn=fn: fn(queries[i % len(queries)]).numpy())
          if i >= FLAGS.warmup_requests:
            times[label].append(ms)
  print(f"  {'':<68}{'p50 ms':>8}{'p99 ms':>8}{'requests':>9}{f'recall@{k}':>11}")
  for label, ms in times.items():
    r = percentiles(ms)
    rec = f"{recall[label]:.4f}" if label in recall else ("1 (exact)" if "exact" in label
                                                           else "")
    print(f"  {label:<68}{r['p50']:>8.2f}{r['p99']:>8.2f}{r['n']:>9}{rec:>11}")
  print(f"  recall@{k} against the exact `retrieve` on {FLAGS.recall_requests} other requests; "
        "issue 12's goal: p99 <= 5 ms at recall >= 0.95 on 2 cores")
