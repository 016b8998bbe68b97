"""tfrec.evaluate against independent computations: direct model calls, raw records, hand cases."""

import dataclasses
import json
import os

import numpy as np
import pytest

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import flags  # noqa: E402
from absl.testing import flagsaver  # noqa: E402

from conftest import ranking_record, tiny_info, tiny_store  # noqa: E402
from tfrec import config as config_lib  # noqa: E402
from tfrec import evaluate as ev_cli  # noqa: E402
from tfrec import evaluation as ev  # noqa: E402
from tfrec.evaluation import sampled as sampled_lib  # noqa: E402
from tfrec import metrics, runs  # noqa: E402
from tfrec.data import schema
from tfrec.datasets import synthetic  # noqa: E402
from tfrec.data.info import DatasetInfo  # noqa: E402
from tfrec.data.item_store import ItemStore  # noqa: E402
from tfrec.data.pipeline import Reader, ReadOptions  # noqa: E402
from tfrec.datasets.synthetic.oracle import ranking_oracle_for  # noqa: E402
from tfrec.data.tfrecord_io import Manifest, decode, write_records  # noqa: E402
from tfrec.metrics import SampledProtocol  # noqa: E402

SMALL = SampledProtocol("small", num_random=15, num_popular=5, ks=(3,))


def _raw_records(data_dir, split):
  """Records decoded straight from the shard files (not through the Reader): path -> list."""
  out = {}
  for path in Manifest.load(data_dir, "ranking", split).paths(data_dir):
    out[path] = [decode(schema.RANKING, bytes(r.numpy()), path, i)
                 for i, r in enumerate(tf.data.TFRecordDataset(path))]
  return out


def _scalar(rec, name):
  return np.asarray(rec[name]).reshape(-1)[0]


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
  """Synthetic tiny world (40 users, 2 shards): records carry the planted oracle_prob."""
  d = str(tmp_path_factory.mktemp("syn"))
  synthetic.generate(synthetic.get_config("tiny", num_users=40, visual_dim=0), d,
                     num_shards=2, verbose=False)
  return d


@pytest.fixture(scope="module")
def run_dir(syn, tmp_path_factory):
  """A run directory with an untrained DIN (attention per candidate: the demanding case)."""
  rd = str(tmp_path_factory.mktemp("run"))
  cfg = config_lib.RunConfig(
      data=config_lib.DataConfig(data_dir=syn, max_seq_len=8),
      model=config_lib.ModelConfig("din", {"dim": 8, "mlp_units": [8], "attention_units": [8]}),
      train=config_lib.TrainConfig(run_dir=rd, seed=0))
  info, store = DatasetInfo.load(syn), ItemStore.load(syn)
  keras.utils.set_random_seed(1)
  model = runs.build_model(cfg, info, store)
  model.save_weights(config_lib.run_paths(rd)["best"])
  cfg.save(rd)
  return rd


@pytest.fixture(scope="module")
def loaded(run_dir):
  return ev.load_run(run_dir)


@pytest.fixture(scope="module")
def split_rows(loaded):
  """Every example of the test split as numpy arrays: one pass of the run's reader."""
  reader = runs.reader(loaded.cfg, "test", training=False, with_provenance=True)
  rows = {}
  for batch in reader.dataset(256):
    for k, v in batch.items():
      rows.setdefault(k, []).append(v.numpy())
  return {k: np.concatenate(v) for k, v in rows.items()}


def _in_memory(rows, batch_size):
  """Reader-like batches from arrays (no Reader: its dataset costs seconds to build)."""
  return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)


@pytest.fixture(scope="module")
def sampled(loaded):
  return ev.evaluate_split(loaded, "test", protocol=SMALL, seed=3, batch_size=32,
                           keep_arrays=True)


def test_pointwise_metrics_are_those_of_direct_model_calls(loaded, split_rows):
  res = ev.evaluate(loaded.model, _in_memory(split_rows, 48), protocol="none",
                    gauc_reduction="mean", keep_arrays=True)
  features, labels = runs.split_label({k: tf.constant(v) for k, v in split_rows.items()})
  logits = loaded.model(features, training=False).numpy()  # eager, all rows at once
  labels, users, oracle = labels.numpy(), split_rows["user_id"], split_rows["oracle_prob"]
  np.testing.assert_allclose(res["arrays"]["logits"], logits, rtol=1e-5, atol=1e-6)
  assert res["metrics"]["auc"] == pytest.approx(metrics.auc(labels, logits))
  assert res["metrics"]["gauc"] == pytest.approx(metrics.gauc(users, labels, logits,
                                                              "mean")["gauc"])
  # The ceiling: the same metrics of the planted P(click) on the same rows.
  assert res["oracle"]["auc"] == pytest.approx(metrics.auc(labels, oracle))
  assert res["oracle"]["gauc"] == pytest.approx(metrics.gauc(users, labels, oracle,
                                                             "mean")["gauc"])
  assert res["oracle"]["auc"] > 0.7 > res["metrics"]["auc"]  # an untrained model is no oracle
  assert res["counts"] == {"examples": len(labels), "users": len(np.unique(users)),
                           "positives": int(labels.sum()),
                           "negatives": int(len(labels) - labels.sum())}
  assert res["protocol"]["ranking"] == "none" and "hr@3" not in res["metrics"]


def test_counts_and_oracle_match_the_raw_records(loaded, sampled):
  raw = _raw_records(loaded.data_dir, "test")
  paths = runs.reader(loaded.cfg, "test", training=False).paths
  arr = sampled["arrays"]
  recs = [raw[paths[f]][r] for f, r in zip(arr["file"], arr["record"])]
  assert len(recs) == sum(len(v) for v in raw.values()) == sampled["counts"]["examples"]
  np.testing.assert_array_equal(arr["labels"], [_scalar(r, "label") for r in recs])
  np.testing.assert_array_equal(arr["item_ids"], [_scalar(r, "item_id") for r in recs])
  prob = np.array([_scalar(r, "oracle_prob") for r in recs])
  assert sampled["oracle"]["auc"] == pytest.approx(metrics.auc(arr["labels"], prob))
  assert sampled["split"] == "test" and sampled["split_records"] == len(recs)


def test_sampled_scores_are_the_models_scores_of_each_candidate(loaded, sampled, split_rows):
  arr = sampled["arrays"]
  rows, cand, scores = arr["rows"], arr["candidates"], arr["scores"]
  np.testing.assert_array_equal(rows, np.nonzero(arr["labels"] == 1)[0])
  assert cand.shape == scores.shape == (len(rows), 1 + SMALL.num_negatives)
  np.testing.assert_array_equal(cand[:, 0], arr["item_ids"][rows])
  # Encode-once consistency: column 0 is the pointwise logit of the same example.
  np.testing.assert_allclose(scores[:, 0], arr["logits"][rows], rtol=1e-5, atol=1e-5)
  assert sampled["checks"]["encode_once_max_abs_diff"] < 1e-5
  # Every negative's score is what model(features) gives with that item as the candidate.
  feats = {k: v for k, v in split_rows.items() if k != "label"}
  for j in (0, len(rows) // 2, len(rows) - 1):
    one = {k: np.repeat(v[rows[j]][None], cand.shape[1], axis=0) for k, v in feats.items()}
    one["item_id"] = cand[j]
    direct = loaded.model({k: tf.constant(v) for k, v in one.items()}, training=False).numpy()
    np.testing.assert_allclose(scores[j], direct, rtol=1e-5, atol=1e-5)
  assert sampled["metrics"]["hr@3"] == pytest.approx(
      np.mean(np.sum(scores[:, 1:] >= scores[:, :1], axis=1) < 3))


def test_negatives_come_from_the_pool_and_never_from_what_the_user_has_seen(loaded, sampled):
  store, arr = loaded.store, sampled["arrays"]
  neg = arr["candidates"][:, 1:]
  assert all(len(set(row)) == neg.shape[1] for row in neg)
  assert np.all(store.domain[neg] == schema.TARGET) and np.all(store.cold[neg] == 0)
  # The train split's positives, decoded from the shard files.
  train = [r for recs in _raw_records(loaded.data_dir, "train").values() for r in recs]
  train_pos = {}
  for r in train:
    if _scalar(r, "label") == 1:
      train_pos.setdefault(int(_scalar(r, "user_id")), set()).add(int(_scalar(r, "item_id")))
  pop = np.bincount([int(_scalar(r, "item_id")) for r in train if _scalar(r, "label") == 1],
                    minlength=loaded.info.num_items + 1)
  np.testing.assert_array_equal(loaded.train_stats().popularity, pop)
  users, labels, items = arr["user_ids"], arr["labels"], arr["item_ids"]
  max_len = loaded.cfg.data.max_seq_len
  raw = _raw_records(loaded.data_dir, "test")
  paths = runs.reader(loaded.cfg, "test", training=False).paths
  for j, row in enumerate(arr["rows"]):
    u = int(users[row])
    hist = raw[paths[arr["file"][row]]][arr["record"][row]]["target_item_ids"][-max_len:]
    split_pos = items[(users == u) & (labels == 1)]
    forbidden = set(hist) | train_pos.get(u, set()) | set(split_pos)
    assert not forbidden & set(neg[j]), (row, forbidden & set(neg[j]))
  assert sampled["protocol"]["negative_pool_size"] == len(store.item_ids(1, cold=False))


def test_negatives_are_seeded_and_independent_of_the_batching(loaded, sampled, split_rows):
  # evaluate on in-memory batches of 7 with what evaluate_split resolved for the run: the
  # same negatives (seeded per example, not per batch), different ones for another seed.
  stats = loaded.train_stats()
  pool, _ = ev.negative_pool(loaded.store, "test")
  kwargs = dict(protocol=SMALL, negative_pool=pool, popularity=stats.popularity,
                seen_items=stats.seen, keep_arrays=True)
  again = ev.evaluate(loaded.model, _in_memory(split_rows, 7), seed=3, **kwargs)
  np.testing.assert_array_equal(again["arrays"]["candidates"], sampled["arrays"]["candidates"])
  np.testing.assert_allclose(again["arrays"]["scores"], sampled["arrays"]["scores"], atol=1e-5)
  assert again["checks"]["negatives_sha256"] == sampled["checks"]["negatives_sha256"]
  other = ev.evaluate(loaded.model, _in_memory(split_rows, 64), seed=4, **kwargs)
  assert other["checks"]["negatives_sha256"] != sampled["checks"]["negatives_sha256"]
  assert other["metrics"]["auc"] == pytest.approx(sampled["metrics"]["auc"])


def test_ranking_oracle_reproduces_the_records_and_rejects_another_world(loaded, sampled,
                                                                        split_rows):
  arr = sampled["arrays"]
  assert sampled["oracle"]["ranking"].startswith("planted P(click)")
  np.testing.assert_allclose(arr["oracle_scores"][:, 0], arr["oracle_prob"][arr["rows"]],
                             atol=1e-6)
  chance = 3 / (1 + SMALL.num_negatives)
  assert sampled["oracle"]["hr@3"] > 2 * chance
  assert sampled["oracle"]["hr@3"] == pytest.approx(metrics.hit_rate_at_k(
      arr["oracle_scores"][:, 0], arr["oracle_scores"][:, 1:], 3))
  # A world with another click bias (same users, sessions and items: the oracle is built) is
  # refused by the per-record oracle_prob check in evaluate (other refusals:
  # tests/test_synthetic_oracle.py).
  info = loaded.info
  config = dict(info.extra["config"], click_bias=-1.0)
  oracle, reason = ranking_oracle_for(dataclasses.replace(info, extra=dict(info.extra,
                                                                            config=config)),
                                      loaded.store)
  assert reason == ""
  pool, _ = ev.negative_pool(loaded.store, "test")
  res = ev.evaluate(loaded.model, _in_memory(split_rows, 64), protocol=SMALL, negative_pool=pool,
                    popularity=loaded.train_stats().popularity, ranking_oracle=oracle,
                    max_examples=60)
  assert res["oracle"]["ranking"].startswith("not available: the re-simulated P(click) of the "
                                             "positive differs from the record's oracle_prob")
  assert np.isnan(res["oracle"]["hr@3"]) and not np.isnan(res["metrics"]["hr@3"])
  assert 0 < res["counts"]["examples"] <= 60  # whole sampled users (test_max_examples_...)


class _ItemIdScorer(keras.Model):
  """Scores a candidate by its item id: every expectation below is computable by hand."""

  def encode_user(self, features, training=None):
    return {"one": tf.ones_like(tf.cast(features["user_id"], tf.float32))[:, None]}

  def score(self, user, candidate_ids, training=None):
    return user["one"] * tf.cast(candidate_ids, tf.float32)

  def call(self, features, training=None):
    return self.score(self.encode_user(features), features["item_id"][:, None])[:, 0]


# (user, item, label, target history); tiny_store: 6..9 warm target items, 10 cold.
_HAND = [(0, 9, 1, []), (0, 6, 0, []), (0, 7, 0, []),
         (1, 6, 1, [7, 8]), (1, 9, 0, []),
         (2, 9, 1, []), (2, 7, 1, []), (2, 6, 1, []), (2, 8, 0, []),
         (3, 9, 1, [])]


@pytest.fixture(scope="module")
def hand_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("hand"))
  info = tiny_info()
  info.save(d)
  tiny_store().save(d)
  recs = [ranking_record(i, user_id=u, item_id=it, label=y, target_item_ids=h,
                         target_timestamps=[10 * k for k in range(len(h))], oracle_prob=-1.0)
          for i, (u, it, y, h) in enumerate(_HAND)]
  write_records(d, "ranking", "test", recs, num_shards=1, info=info)
  return d


@pytest.fixture(scope="module")
def hand_reader(hand_dir):
  return Reader(hand_dir, "ranking", "test", ReadOptions(with_provenance=True))


@pytest.fixture(scope="module")
def hand_ds(hand_reader):
  (batch,) = list(hand_reader.dataset(64))
  return _in_memory({k: v.numpy() for k, v in batch.items()}, 4)


def test_gauc_reductions_and_sampled_ranking_on_a_hand_built_case(hand_ds):
  # Per-user AUC of score = item id: user 0: 9 vs 6,7 -> 1 (3 examples, 1 positive);
  # user 1: 6 vs 9 -> 0 (2, 1); user 2: 9,7,6 vs 8 -> 1/3 (4, 3); user 3: one class, skipped.
  expected = {"mean": (1 + 0 + 1 / 3) / 3, "samples": (3 + 0 + 4 / 3) / 9,
              "positives": (1 + 0 + 3 / 3) / 5}
  assert len(set(np.round(list(expected.values()), 6))) == 3
  ds = hand_ds
  pool, desc = ev.negative_pool(tiny_store(), "test")
  np.testing.assert_array_equal(pool, [6, 7, 8, 9])
  np.testing.assert_array_equal(ev.negative_pool(tiny_store(), "test_cold")[0], [10])
  one = SampledProtocol("one", num_random=1, num_popular=0, ks=(1,))
  for reduction, value in expected.items():
    res = ev.evaluate(_ItemIdScorer(), ds, protocol=one, gauc_reduction=reduction,
                      negative_pool=pool, seen_items={0: np.array([6, 7])}, keep_arrays=True)
    assert res["metrics"]["gauc"] == pytest.approx(value), reduction
    assert res["gauc"]["users"] == 3 and res["gauc"]["users_skipped"] == 1
    assert res["gauc"]["reduction"] == reduction
  # The only eligible negative of each positive: user 0: 8 (6, 7 are given as seen);
  # user 1: 9 (7, 8 are in its history); user 2: 8 (its positives 9, 7, 6 are excluded);
  # user 3: any of 6, 7, 8. Score = item id, so the positives 9, 9, 9 win and 6, 7, 6 lose.
  cand = res["arrays"]["candidates"]
  np.testing.assert_array_equal(cand[:4, 1], [8, 9, 8, 8])
  assert cand[5, 1] in (6, 7, 8)
  assert res["metrics"]["hr@1"] == pytest.approx(3 / 6)
  assert res["metrics"]["ndcg@1"] == pytest.approx(3 / 6)
  # No oracle on these records, and none for a dataset the generator did not write.
  assert res["oracle"]["pointwise"].startswith("not available: 10 of 10 examples")
  assert np.isnan(res["oracle"]["auc"])
  assert ranking_oracle_for(tiny_info())[0] is None
  res = ev.evaluate(_ItemIdScorer(), ds, protocol=one, negative_pool=pool,
                    ranking_oracle_reason=ranking_oracle_for(tiny_info())[1])
  assert "not written by tfrec.datasets.synthetic" in res["oracle"]["ranking"]


def test_topk_impression_metrics_on_the_hand_built_case(hand_ds):
  # Score = item id. User 0 impressions 9+, 6-, 7- -> list 9+, 7-, 6-; user 1: 6+, 9- -> 9-, 6+;
  # user 2: 9+, 7+, 6+, 8- -> 9+, 8-, 7+, 6+; user 3: 9+ alone.
  res = ev.evaluate(_ItemIdScorer(), hand_ds, protocol="none", topk_ks=(1, 2))
  m = res["metrics"]
  assert m["topk_precision@1"] == pytest.approx((1 + 0 + 1 + 1) / 4)
  assert m["topk_precision@2"] == pytest.approx((0.5 + 0.5 + 0.5 + 0.5) / 4)
  assert m["topk_recall@2"] == pytest.approx((1 + 1 + 1 / 3 + 1) / 4)
  # NDCG@2: user 1's click at rank 2 -> (1/log2 3) / 1; user 2: 1 / (1 + 1/log2 3).
  g = 1 / np.log2(3)
  assert m["topk_ndcg@2"] == pytest.approx((1 + g + 1 / (1 + g) + 1) / 4)
  top = res["topk"]
  assert top["ks"] == [1, 2] and top["users"] == 4 and top["users_skipped"] == 0
  assert top["oracle"] is None  # no oracle_prob on these records
  assert "hr@1" not in m  # no sampled ranking with protocol none
  md = ev.to_markdown(res)
  assert "| top-2 NDCG |" in md and "| top-K | per user:" in md


def test_a_pool_too_small_for_the_protocol_names_the_record(hand_reader, hand_ds):
  pool, _ = ev.negative_pool(tiny_store(), "test")
  four = SampledProtocol("four", num_random=4, num_popular=0, ks=(1,))
  with pytest.raises(ValueError, match=r"ranking/test-00000-of-00001.tfrecord, record 0: "
                     r"user 0, positive item 9: only 3 eligible .* --negative_pool"):
    ev.evaluate(_ItemIdScorer(), hand_ds, protocol=four, negative_pool=pool,
                paths=hand_reader.paths)
  ten = SampledProtocol("ten", num_random=10, num_popular=0, ks=(1,))
  with pytest.raises(ValueError, match="needs 10 negatives .* holds 4 items"):
    ev.evaluate(_ItemIdScorer(), hand_ds, protocol=ten, negative_pool=pool)  # before reading


def test_a_model_that_reads_the_candidate_in_encode_user_is_refused(hand_ds):
  class Peeking(_ItemIdScorer):
    def encode_user(self, features, training=None):
      return {"one": tf.cast(features["item_id"], tf.float32)[:, None]}

  pool, _ = ev.negative_pool(tiny_store(), "test")
  with pytest.raises(ValueError, match="item_id is withheld"):
    ev.evaluate(Peeking(), hand_ds, negative_pool=pool,
                protocol=SampledProtocol("one", 1, 0, (1,)))


def test_checkpoint_choice_is_exact(run_dir, tmp_path):
  best = config_lib.run_paths(run_dir)["best"]
  assert runs.checkpoint_path(run_dir, "best") == best
  assert runs.checkpoint_path(run_dir, best) == best
  with pytest.raises(FileNotFoundError, match="no 'final' checkpoint .*it has: best"):
    runs.checkpoint_path(run_dir, "final")  # never the best one instead
  with pytest.raises(FileNotFoundError, match="no 'final' checkpoint .*it has: best"):
    ev.load_run(run_dir, "final")
  with pytest.raises(FileNotFoundError, match="not a checkpoint prefix"):
    ev.load_run(run_dir, str(tmp_path / "nothing"))


def _strict_json(path):
  def no_nan(name):
    raise AssertionError(f"{path}: {name} is not JSON")
  with open(path) as f:
    return json.load(f, parse_constant=no_nan)


def test_main_writes_json_and_markdown_recording_the_protocol(run_dir, syn, capsys):
  ev_cli.define_flags()
  fl = flags.FLAGS
  if not fl.is_parsed():
    fl.mark_as_parsed()
  with flagsaver.flagsaver(run_dir=run_dir, splits=["test_cold"], protocol="couple",
                           negative_pool="all", gauc_reduction="positives", max_examples=50,
                           batch_size=32, eval_seed=5):
    ev_cli.main(["tfrec.evaluate"])
  out = capsys.readouterr().out
  for split in ("test_cold",):
    res = _strict_json(os.path.join(run_dir, "eval", f"{split}.json"))
    with open(os.path.join(run_dir, "eval", f"{split}.md")) as f:
      md = f.read()
    assert md in out
    p = res["protocol"]
    assert (p["ranking"], p["name"], p["num_random"], p["num_popular"], p["ks"], p["seed"]) == \
        ("sampled", "couple", 50, 50, [5, 10], 5)
    assert p["negative_pool"].startswith("all target-domain items")
    assert res["gauc"]["reduction"] == "positives" and res["split"] == split
    assert res["checkpoint"]["path"] == config_lib.run_paths(run_dir)["best"]
    assert res["dataset"] == {"dir": syn, "name": "synthetic/tiny"}
    # Whole users sampled with the eval seed, at most 50 examples (was: the first 50 records).
    assert 0 < res["counts"]["examples"] <= 50 and res["max_examples"] == 50
    sampling = res["sampling"]
    assert sampling["seed"] == 5 and sampling["users"] == res["counts"]["users"]
    assert res["protocol"]["examples"].startswith("users sampled at random")
    assert f"{sampling['users']} of {sampling['split_users']} users sampled with seed 5" in md
    assert set(res["metrics"]) == {"auc", "gauc", "hr@5", "ndcg@5", "hr@10", "ndcg@10"}
    assert "| HR@10 |" in md and "50 random + 50 by popularity" in md
    assert "GAUC (positives)" in md and f"split {split}" in md
    # The run validated on "valid": recorded, printed, no warning.
    assert res["validation"] == {"split": "valid", "allow_test_validation": False,
                                 "touches_evaluated_split": False, "warning": ""}
    assert "| validated on | `valid` (early stopping and the best checkpoint); " \
        "allow_test_validation not set |" in md and "WARNING" not in md


def test_main_evaluates_test_by_default(run_dir, capsys):
  ev_cli.define_flags()
  fl = flags.FLAGS
  if not fl.is_parsed():
    fl.mark_as_parsed()
  out_json = os.path.join(run_dir, "eval", "default_{split}.json")
  with flagsaver.flagsaver(run_dir=run_dir, splits=None, protocol="none", max_examples=30,
                           output_json=out_json, output_md=out_json[:-4] + "md"):
    ev_cli.main(["tfrec.evaluate"])
  assert _strict_json(out_json.format(split="test"))["split"] == "test"
  assert "split test" in capsys.readouterr().out


def test_sample_users_takes_whole_random_users():
  # 40 users in blocks of 1..4 examples, in user order (the first records: the first users).
  sizes = np.arange(40) % 4 + 1
  users = np.repeat(np.arange(40), sizes)
  chosen = {}
  for seed in (0, 1, 2):
    mask, rec = sampled_lib.sample_users(users, 30, seed)
    picked = np.unique(users[mask])
    # Whole users only, at most 30 examples, and the next user in the order would not fit.
    assert mask.sum() <= 30 and mask.sum() == sizes[picked].sum()
    assert rec == {"max_examples": 30, "split_users": 40, "split_examples": len(users),
                   "rule": sampled_lib.SAMPLING_RULE, "seed": seed, "users": len(picked)}
    chosen[seed] = set(picked.tolist())
  again, _ = sampled_lib.sample_users(users, 30, 1)
  assert set(np.unique(users[again]).tolist()) == chosen[1]  # the same seed: the same users
  assert chosen[0] != chosen[1] != chosen[2] != chosen[0]  # other seeds: other users
  # max_examples 0 or >= the split: every example, no sampling.
  for n in (0, len(users)):
    mask, rec = sampled_lib.sample_users(users, n, 3)
    assert mask.all() and rec["seed"] is None and rec["rule"] == "every example of the split"
  # A first user with more examples than asked: its first ones, in split order.
  mask, rec = sampled_lib.sample_users(np.array([7, 7, 7, 7]), 2, 0)
  assert mask.tolist() == [True, True, False, False] and rec["users"] == 1


def test_sample_users_does_not_favour_the_first_records():
  # 100 users x 5 examples in user order; 50 examples = 10 users a draw. Over 400 seeds each
  # user is drawn 40 times on average (binomial sd ~6); the first records' users are not.
  users = np.repeat(np.arange(100), 5)
  counts = np.zeros(100)
  positions = []
  for seed in range(400):
    mask, _ = sampled_lib.sample_users(users, 50, seed)
    counts[np.unique(users[mask])] += 1
    positions.append(np.flatnonzero(mask).mean())
  assert counts.sum() == 400 * 10
  assert counts[:10].mean() == pytest.approx(40, abs=8)  # the first tenth of the split
  assert counts[:50].mean() == pytest.approx(counts[50:].mean(), abs=4)
  # The mean position of the evaluated records is the split's middle (249.5), not ~25.
  assert np.mean(positions) == pytest.approx(249.5, abs=10)


def test_evaluate_samples_users_with_the_eval_seed(hand_ds):
  pool, _ = ev.negative_pool(tiny_store(), "test")
  one = SampledProtocol("one", num_random=1, num_popular=0, ks=(1,))
  full = ev.evaluate(_ItemIdScorer(), hand_ds, protocol=one, negative_pool=pool,
                     keep_arrays=True, seed=0)
  picked = {}
  for seed in range(6):
    res = ev.evaluate(_ItemIdScorer(), hand_ds, protocol=one, negative_pool=pool,
                      keep_arrays=True, seed=seed, max_examples=5)
    users = res["arrays"]["user_ids"]
    picked[seed] = tuple(sorted(set(users.tolist())))
    # Every example of each picked user (hand case: users 0..3 have 3, 2, 4, 1 examples).
    assert len(users) == sum({0: 3, 1: 2, 2: 4, 3: 1}[u] for u in picked[seed]) <= 5
    # A positive's negatives are those of the same split row as without sampling.
    rows = np.flatnonzero(np.isin(full["arrays"]["user_ids"], picked[seed])
                          & (full["arrays"]["labels"] == 1))
    if seed == 0:
      np.testing.assert_array_equal(res["arrays"]["candidates"],
                                    full["arrays"]["candidates"][np.searchsorted(
                                        full["arrays"]["rows"], rows)])
  assert len(set(picked.values())) > 1


def test_validation_is_recorded_and_a_test_split_warned_about(loaded, sampled):
  cfg = loaded.cfg
  assert ev.validation_record(cfg, "test")["warning"] == ""
  on_test = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, valid_split="test"),
                                train=dataclasses.replace(cfg.train, allow_test_validation=True))
  rec = ev.validation_record(on_test, "test")
  assert rec["touches_evaluated_split"] and rec["allow_test_validation"]
  assert "the split evaluated here" in rec["warning"]
  other = ev.validation_record(on_test, "test_cold")
  assert not other["touches_evaluated_split"] and "a test split" in other["warning"]
  off = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, validation_steps=0))
  assert ev.validation_record(off, "test") == {"split": None, "allow_test_validation": False,
                                               "touches_evaluated_split": False, "warning": ""}
  md = ev.to_markdown({**sampled, "validation": rec})
  assert "**WARNING: the run validated on 'test', the split evaluated here" in md
  assert "allow_test_validation set" in md


def test_main_refuses_what_it_cannot_do_honestly(run_dir):
  ev_cli.define_flags()
  fl = flags.FLAGS
  if not fl.is_parsed():
    fl.mark_as_parsed()
  # The tiny world's cold pool (30 items) cannot give SEMI's 300 negatives.
  with flagsaver.flagsaver(run_dir=run_dir, splits=["test_cold"], protocol="semi"):
    with pytest.raises(SystemExit, match="needs 300 .* pool .cold target-domain items"):
      ev_cli.main(["tfrec.evaluate"])
  with flagsaver.flagsaver(run_dir=run_dir, model="bst", model_args=["dim=8"], protocol="none"):
    with pytest.raises(SystemExit, match="holds a din model .* --model=bst .the run has din.$"):
      ev_cli.main(["tfrec.evaluate"])
  with flagsaver.flagsaver(run_dir=run_dir, model="din", model_args=["dim=16"], protocol="none"):
    with pytest.raises(SystemExit, match="--model_args=dim=16 .the run has 8."):
      ev_cli.main(["tfrec.evaluate"])
  with flagsaver.flagsaver(run_dir=run_dir, splits=["test", "test_cold"], protocol="none",
                           output_json="/tmp/one.json"):
    with pytest.raises(SystemExit, match="put {split} in it"):
      ev_cli.main(["tfrec.evaluate"])
