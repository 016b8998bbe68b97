"""Serving latency of the exported `rank` signature: one user x N candidates per request.

    python -m tfrec.bench serve [--model=cross_bst] [--candidates=500] [--requests=200]
        [--naive_requests=40] [--warmup_requests=10] [--seq=50] [--dim=128] [--heads=8]

The model is built at the papers' sizes (SEMI App. A.1: d = 128, 8 heads, feed-forward 128,
histories of 50 per domain, i.e. 50 + 50 merged for Cross-BST; one-domain models read the
target history only) with random weights over an in-memory synthetic item store (20K items,
128-d visual vectors, 50 categories), exported with `tfrec.serving.export` to a temporary
directory and loaded back with `tf.saved_model.load`, as a serving process would. Requests cycle
through 16 random users (full histories, increasing timestamps within a week), each with its
own random target-domain candidates. After `--warmup_requests` untimed requests of each kind, it times:

  * rank:  the request through the `rank` signature: the user's sequences are encoded once and
    the N candidates scored against that encoding;
  * naive: the same request as N paired examples through the `score` signature, the user
    replicated N times (its sequences encoded N times: what a model without the
    encode-once split costs);
  * model only: the in-memory model's encode_user + score on ready-padded features, in a
    `tf.function`: the floor under `rank`, so rank - model only = request checks, truncation,
    padding and the SavedModel call.

The kinds are interleaved, so a change in the machine's load hits all alike. Latency is
per request, from the Python call of the signature to the scores in numpy (no RPC). SEMI's
production figure (App. A.4: about 500 candidates per request in about 30 ms, at about 2,500
requests/s on Taobao's serving platform) is printed as the reference.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Dict, List

from absl import flags
import numpy as np
import tensorflow as tf

from tfrec import serving as export_lib
from tfrec.bench import common
from tfrec.data import schema

FLAGS = flags.FLAGS
SEMI_MS = 30.0  # SEMI App. A.4: ~500 candidates per request in ~30 ms.
HOUR = 3600


common.define("string", "model", "cross_bst", "Registered model to serve (tfrec.models.registry).")
common.define("integer", "candidates", 500, "Candidates per request (SEMI App. A.4: about 500).")
common.define("integer", "requests", 200, "Timed `rank` requests.")
common.define("integer", "naive_requests", 40, "Timed naive requests (user replicated per candidate).")
common.define("integer", "warmup_requests", 10, "Untimed requests of each kind first.")
common.define("integer", "seq", 50, "History length per domain, all positions real (SEMI: 50).")
common.define("integer", "dim", 128, "Item/sequence width d (SEMI A.1: 128).")
common.define("integer", "heads", 8, "Attention heads (SEMI A.1: 8).")
common.define("integer", "ff_dim", 128, "Feed-forward width of the attention block (SEMI: 128).")
common.define("integer", "items", 20_000, "Items in the in-memory item store.")
common.define("integer", "categories", 50, "Item categories.")
common.define("integer", "visual_dim", 128, "Width of the item store's visual vectors.")
common.define("integer", "seed", 0, "Seed of the random store, weights and requests.")


def build_model(name: str, items: int, categories: int, visual_dim: int, seq: int, dim: int,
                heads: int, ff_dim: int, seed: int):
  """Registered model `name` at the given sizes, random weights, a random store filled in."""
  tf.random.set_seed(seed)
  store = common.random_item_store(items, categories, visual_dim, seed)
  return common.build_model(name, store, categories, seq, dim, heads, ff_dim)


def make_requests(model, count: int, candidates: int, seq: int, seed: int
                  ) -> List[Dict[str, Dict[str, tf.Tensor]]]:
  """`count` random users, each as a `rank` request and as the naive `score` batch."""
  rng = np.random.default_rng(seed + 1)
  half = model.num_items // 2
  ranges = {"source": (1, half + 1), "target": (half + 1, model.num_items + 1)}
  now = 1_000 * HOUR
  out = []
  for _ in range(count):
    cands = rng.integers(*ranges["target"], candidates)
    rank = {"timestamp": np.int64(now), export_lib.CANDIDATES: cands}
    naive = {"timestamp": np.full([candidates], now), "item_id": cands}
    padded = {"timestamp": np.full([1], now)}
    for d in model.domains:
      ids = rng.integers(*ranges[d], seq)
      ts = now - np.sort(rng.integers(0, 168 * HOUR, seq))[::-1]
      rank.update({f"{d}_item_ids": ids, f"{d}_timestamps": ts})
      naive.update({f"{d}_item_ids": np.tile(ids, [candidates, 1]),
                    f"{d}_timestamps": np.tile(ts, [candidates, 1])})
      padded.update({f"{d}_item_ids": ids[None], f"{d}_timestamps": ts[None]})
    padded = _as_tf(padded)
    padded.update({f"{d}_mask": padded[f"{d}_item_ids"] > 0 for d in model.domains})
    out.append({"rank": _as_tf(rank), "naive": _as_tf(naive),
                "model": {"features": padded, "candidates": tf.constant(cands[None])}})
  return out


def _as_tf(request: Dict[str, Any]) -> Dict[str, tf.Tensor]:
  return {k: tf.constant(np.asarray(v, np.int64)) for k, v in request.items()}


def model_only(model):
  """The in-memory model on ready-padded features: encode once, score N; no request checks,
  no truncation or padding, no SavedModel (the floor under `rank`)."""

  @tf.function
  def run(features, candidates):
    user = model.encode_user(features, training=False)
    return {"scores": tf.sigmoid(model.score(user, candidates, training=False))}

  return run


def percentiles(ms: List[float]) -> Dict[str, float]:
  return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
          "n": len(ms)}


def time_requests(signatures: Dict[str, Any], requests: List[Dict[str, Dict[str, tf.Tensor]]],
                  n_rank: int, n_naive: int, warmup: int) -> Dict[str, List[float]]:
  """Milliseconds per request of each kind; the kinds take turns (naive ones spread among the
  others), so that a change in the machine's load hits all of them alike."""
  def call(kind: str, i: int) -> float:
    req = requests[i % len(requests)][kind]
    start = time.perf_counter()
    signatures[kind](**req)["scores"].numpy()
    return 1000.0 * (time.perf_counter() - start)

  for i in range(warmup):
    for kind in signatures:
      call(kind, i)
  times: Dict[str, List[float]] = {kind: [] for kind in signatures}
  for i in range(n_rank):
    times["rank"].append(call("rank", i))
    times["model"].append(call("model", i))
    while len(times["naive"]) < n_naive * (i + 1) // n_rank:
      times["naive"].append(call("naive", i))
  return times


def main(argv) -> None:
  common.check_no_arguments(argv)
  name = FLAGS.model
  dim, heads, ff_dim = FLAGS.dim or 128, FLAGS.heads or 8, FLAGS.ff_dim or 128
  start = time.perf_counter()
  model = build_model(name, FLAGS.items, FLAGS.categories, FLAGS.visual_dim, FLAGS.seq, dim,
                      heads, ff_dim, FLAGS.seed)
  with tempfile.TemporaryDirectory(prefix="tfrec_bench_serve_") as tmp:
    # Requests carry --seq events: the export accepts histories up to that (at least the
    # contract's default).
    path = export_lib.export(model, os.path.join(tmp, "1"),
                             max_len=max(FLAGS.seq, schema.MAX_SEQ_LEN))
    setup = time.perf_counter() - start
    loaded = tf.saved_model.load(path)
    signatures = {"rank": loaded.signatures[export_lib.RANK],
                  "naive": loaded.signatures[export_lib.SCORE], "model": model_only(model)}
    requests = make_requests(model, 16, FLAGS.candidates, FLAGS.seq, FLAGS.seed)
    # Both kinds give the same scores (a sanity check, not a timing).
    check = signatures["rank"](**requests[0]["rank"])["logits"].numpy()
    naive = signatures["naive"](**requests[0]["naive"])["logits"].numpy()
    np.testing.assert_allclose(check, naive, rtol=1e-4, atol=1e-4)
    times = time_requests(signatures, requests, FLAGS.requests, FLAGS.naive_requests,
                          FLAGS.warmup_requests)
  rank, naive, floor = (percentiles(times[k]) for k in ("rank", "naive", "model"))
  history = " + ".join(f"{FLAGS.seq} {d}" for d in model.domains)
  n = FLAGS.candidates
  devices = sorted({d.device_type for d in tf.config.list_logical_devices()})
  print(f"serving latency of {name}: 1 user x {n} candidates per request; d={dim}"
        + (f", {heads} heads, ff {ff_dim}" if "num_heads" in model.get_config() else "")
        + f"; history {history}; {FLAGS.items:,} items ({FLAGS.visual_dim}-d visual)")
  print(f"random weights; SavedModel loaded with tf.saved_model.load; TF {tf.__version__}, "
        f"{os.cpu_count()} CPU cores, devices {', '.join(devices)}")
  print(f"  {'':<48}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'candidates/s':>14}")
  for label, r in (("rank (user encoded once)", rank),
                   (f"naive (user replicated {n}x, `score`)", naive),
                   ("model only (in memory, no checks/padding)", floor)):
    print(f"  {label:<48}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['n']:>10}"
          f"{n / r['p50'] * 1000:>14,.0f}")
  print(f"  {'naive / rank':<48}{naive['p50'] / rank['p50']:>9.1f}"
        f"{naive['p99'] / rank['p99']:>9.1f}")
  print(f"  {'SEMI in production (App. A.4, ~500 candidates)':<48}{'~' + str(int(SEMI_MS)):>9}")
  print(f"  (build + export {setup:.1f} s, not timed)")
