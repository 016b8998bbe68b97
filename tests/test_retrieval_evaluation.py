"""Evaluation of retrieval runs (tfrec/evaluation/retrieval.py): whole-pool ranks by hand, the
model's scores against a brute-force numpy ranking, sampled protocols, and the command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrec import runs
from tfrec import train as train_lib
from tfrec.evaluation import retrieval
from tfrec.evaluation.sampled import negative_pool

from conftest import make_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_full_ranks_by_hand():
  scores = np.array([[0.0, 5.0, 3.0, 3.0, 9.0, 1.0],
                     [0.0, 2.0, 2.0, 7.0, 1.0, 0.5]])
  pool = np.array([False, True, True, True, True, True])  # item 0 is padding
  positives = np.array([2, 1])
  history = np.array([[4, 0], [3, 2]])
  ranks = retrieval.full_ranks(scores, positives, history, pool)
  # Row 0: pool {1,3,5} after excluding history 4 and the positive 2: 5 >= 3 and the tie 3 >= 3.
  # Row 1: history 3 and 2 excluded: {4, 5} score below 2: rank 0.
  assert ranks.tolist() == [2, 0]


@pytest.fixture(scope="module")
def tiny_run(syn_dir, tmp_path_factory):
  run = str(tmp_path_factory.mktemp("retrieval") / "run")
  train_lib.train(make_config(syn_dir, run, model="youtube_dnn", steps_per_epoch=2,
                              batch_size=32, validation_steps=1))
  return run


def test_full_protocol_matches_a_brute_force_ranking(tiny_run, syn_dir):
  model, cfg, info, store = runs.restore_model(tiny_run, "best")
  pool, _ = negative_pool(store, "test")
  reader = runs.reader(cfg, "test", training=False, info=info, kind="matching")
  result = retrieval.evaluate_retrieval(model, reader, pool, "full", ks=(5, 20),
                                        keep_arrays=True)
  batch = next(iter(reader.dataset(100_000)))  # the whole split
  n = len(batch["positive_item_id"])
  q = model(batch, training=False).numpy()
  items = model.encode_items(np.arange(model.num_items + 1)).numpy()
  ranks = []
  for r in range(n):
    pos = int(batch["positive_item_id"][r])
    hist = set(batch["seq_item_ids"].numpy()[r][batch["seq_mask"].numpy()[r]].tolist())
    cands = [i for i in pool.tolist() if i not in hist and i != pos]
    s = items @ q[r]
    ranks.append(sum(s[c] >= s[pos] for c in cands))
  ranks = np.array(ranks)
  assert result["counts"]["examples"] == n
  assert result["metrics"]["hr@5"] == pytest.approx(np.mean(ranks < 5))
  assert result["metrics"]["ndcg@20"] == pytest.approx(
      np.mean(np.where(ranks < 20, 1 / np.log2(ranks + 2), 0)), rel=1e-6)
  assert result["metrics"]["recall@20"] == result["metrics"]["hr@20"]
  # The kept arrays are the same ranks, per example in split order; no cold users, no groups.
  assert result["arrays"]["ranks"].tolist() == ranks.tolist()
  assert result["arrays"]["user_ids"].tolist() == batch["user_id"].numpy().tolist()
  assert "groups" not in result and not result["arrays"]["cold_user"].any()
  # Per scenario: the same brute-force ranks over each scenario's examples.
  scen = batch["scenario_id"].numpy()
  assert len(np.unique(scen)) > 1 and result["arrays"]["scenario_id"].tolist() == scen.tolist()
  assert list(result["scenarios"]) == [f"scenario {s}" for s in np.unique(scen)]
  for s in np.unique(scen):
    g = result["scenarios"][f"scenario {s}"]
    assert g["examples"] == int((scen == s).sum())
    assert g["metrics"]["hr@20"] == pytest.approx(np.mean(ranks[scen == s] < 20))


def test_user_groups_by_hand():
  ranks = np.array([0, 7, 3, 12, 1])
  users = np.array([4, 4, 9, 2, 2])
  cold = np.array([0, 0, 1, 0, 0])
  g = retrieval.user_groups(ranks, users, cold, ks=(5,))
  assert g["warm users"]["examples"] == 4 and g["warm users"]["users"] == 2
  assert g["warm users"]["metrics"]["hr@5"] == pytest.approx(2 / 4)  # ranks 0, 7, 12, 1
  assert g["warm users"]["metrics"]["ndcg@5"] == pytest.approx((1 + 1 / np.log2(3)) / 4)
  assert g["cold users"]["examples"] == 1 and g["cold users"]["metrics"]["hr@5"] == 1.0
  assert g["cold users"]["metrics"]["ndcg@5"] == pytest.approx(1 / np.log2(5))
  assert "cold users" not in retrieval.user_groups(ranks, users, 0 * cold, ks=(5,))


def test_a_kept_trace_is_reused_by_later_evaluations(tiny_run):
  model, cfg, info, store = runs.restore_model(tiny_run, "best")
  pool, _ = negative_pool(store, "test")
  reader = runs.reader(cfg, "test", training=False, info=info, kind="matching")
  traced = {}
  first = retrieval.evaluate_retrieval(model, reader, pool, "full", ks=(5,), batch_size=64,
                                       traced=traced)
  count = traced["encode"].experimental_get_tracing_count()
  again = retrieval.evaluate_retrieval(model, reader, pool, "full", ks=(5,), batch_size=64,
                                       traced=traced)
  assert traced["encode"].experimental_get_tracing_count() == count  # no new trace
  assert again["metrics"] == first["metrics"]


def test_scenario_groups_by_hand():
  ranks = np.array([0, 7, 3, 12, 1])
  users = np.array([4, 4, 9, 2, 2])
  scenario = np.array([2, 0, 2, 2, 0])
  g = retrieval.scenario_groups(ranks, users, scenario, ks=(5,), oracle_ranks=ranks * 0)
  assert list(g) == ["scenario 0", "scenario 2"]  # id order, only the ids present
  assert g["scenario 0"]["examples"] == 2 and g["scenario 0"]["users"] == 2
  assert g["scenario 0"]["metrics"]["hr@5"] == pytest.approx(1 / 2)  # ranks 7, 1
  assert g["scenario 2"]["metrics"]["ndcg@5"] == pytest.approx((1 + 1 / np.log2(5)) / 3)
  assert g["scenario 2"]["oracle"]["hr@5"] == 1.0
  assert "oracle" not in retrieval.scenario_groups(ranks, users, scenario, ks=(5,))["scenario 0"]


def test_seen_items_are_excluded_beyond_the_sequence(tiny_run, tmp_path):
  from tfrec.data import seen_items
  model, cfg, info, store = runs.restore_model(tiny_run, "best")
  pool, _ = negative_pool(store, "test")
  reader = runs.reader(cfg, "test", training=False, info=info, kind="matching")
  batch = next(iter(reader.dataset(100_000)))
  users = np.unique(batch["user_id"].numpy())
  extra = {int(u): pool[(int(u) + np.arange(3)) % len(pool)] for u in users}  # 3 older items
  path = seen_items.write(str(tmp_path), "test", extra.items())
  seen = seen_items.load(str(tmp_path), "test")
  assert path.endswith("seen_items/test.npz") and sorted(seen) == users.tolist()
  result = retrieval.evaluate_retrieval(model, reader, pool, "full", ks=(5, 20), seen=seen)
  assert "whole history" in result["protocol"]["description"]
  q = model(batch, training=False).numpy()
  items = model.encode_items(np.arange(model.num_items + 1)).numpy()
  ranks = []
  for r in range(len(q)):
    pos = int(batch["positive_item_id"][r])
    hist = set(batch["seq_item_ids"].numpy()[r][batch["seq_mask"].numpy()[r]].tolist())
    hist |= set(extra[int(batch["user_id"][r])].tolist())
    s = items @ q[r]
    ranks.append(sum(s[c] >= s[pos] for c in pool.tolist() if c not in hist and c != pos))
  assert result["metrics"]["hr@20"] == pytest.approx(np.mean(np.array(ranks) < 20))
  sampled = retrieval.evaluate_retrieval(model, reader, pool, "sasrec", seen=seen,
                                         max_examples=20)
  assert "whole history" in sampled["protocol"]["description"]
  with pytest.raises(ValueError, match="no seen items"):
    retrieval.evaluate_retrieval(model, reader, pool, "full", seen={})
  with pytest.raises(ValueError, match="given twice"):
    seen_items.write(str(tmp_path), "x", [(1, [2]), (1, [3])])
  np.savez(seen_items.path(str(tmp_path), "bad"), users=np.array([1]), indptr=np.array([0, 5]),
           items=np.array([1]))
  with pytest.raises(ValueError, match="bad.npz: indptr"):
    seen_items.load(str(tmp_path), "bad")
  assert seen_items.load(str(tmp_path), "missing") is None


def test_full_protocol_ranks_by_the_planted_oracle_too(tiny_run):
  from tfrec.datasets.synthetic.oracle import SyntheticOracle
  model, cfg, info, store = runs.restore_model(tiny_run, "best")
  pool, _ = negative_pool(store, "test")
  reader = runs.reader(cfg, "test", training=False, info=info, kind="matching")
  oracle = SyntheticOracle(info, store)
  result = retrieval.evaluate_retrieval(model, reader, pool, "full", ks=(5, 20), oracle=oracle)
  batch = next(iter(reader.dataset(100_000)))
  ranks = []
  for r in range(len(batch["positive_item_id"])):  # brute force, one example at a time
    pos = int(batch["positive_item_id"][r])
    hist = set(batch["seq_item_ids"].numpy()[r][batch["seq_mask"].numpy()[r]].tolist())
    cands = np.array([i for i in pool.tolist() if i not in hist and i != pos] + [pos])
    s = oracle.positive_intensities(batch["user_id"].numpy()[r:r + 1],
                                    batch["timestamp"].numpy()[r:r + 1],
                                    batch["scenario_id"].numpy()[r:r + 1], cands[None])[0]
    ranks.append(int(np.sum(s[:-1] >= s[-1])))
  assert result["oracle"]["available"]
  assert result["oracle"]["metrics"]["hr@20"] == pytest.approx(np.mean(np.array(ranks) < 20))
  assert result["oracle"]["metrics"]["hr@20"] > result["metrics"]["hr@20"]  # a 2-step model
  scen = batch["scenario_id"].numpy()
  for s in np.unique(scen):
    assert result["scenarios"][f"scenario {s}"]["oracle"]["hr@20"] == pytest.approx(
        np.mean(np.array(ranks)[scen == s] < 20))
  assert "planted oracle" in retrieval.to_markdown({**result, "split": "test", "model": {
      "name": "youtube_dnn"}, "validation": {"split": "valid"}})


def test_sampled_protocol_is_seeded_and_never_draws_history(tiny_run, syn_dir):
  model, cfg, info, store = runs.restore_model(tiny_run, "best")
  pool, _ = negative_pool(store, "test")
  reader = runs.reader(cfg, "test", training=False, info=info, kind="matching")
  a = retrieval.evaluate_retrieval(model, reader, pool, "sasrec", max_examples=30, seed=1)
  b = retrieval.evaluate_retrieval(model, reader, pool, "sasrec", max_examples=30, seed=1)
  assert a["metrics"] == b["metrics"] and list(a["metrics"]) == ["hr@10", "recall@10",
                                                                   "ndcg@10"]
  assert "100 random" in a["protocol"]["description"]
  assert a["sampling"]["users"] == b["sampling"]["users"] and a["counts"]["examples"] <= 30
  c = retrieval.evaluate_retrieval(model, reader, pool, "sasrec", max_examples=30, seed=2)
  assert c["sampling"]["seed"] == 2
  with pytest.raises(ValueError, match="unknown retrieval protocol 'x'"):
    retrieval.evaluate_retrieval(model, reader, pool, "x")
  with pytest.raises(ValueError, match="draws negatives by popularity"):
    retrieval.evaluate_retrieval(model, reader, pool, "couple")


def test_the_command_line_evaluates_a_retrieval_run(tiny_run):
  out = subprocess.run([sys.executable, "-m", "tfrec.evaluate", f"--run_dir={tiny_run}",
                        "--protocol=full", "--retrieval_ks=10", "--max_examples=50"],
                       capture_output=True, text=True, timeout=180, cwd=REPO,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.load(open(os.path.join(tiny_run, "eval", "test.json")))
  assert result["format"] == retrieval.FORMAT and result["split"] == "test"
  assert set(result["metrics"]) == {"hr@10", "recall@10", "ndcg@10"}
  assert "| hr@10 |" in out.stdout
  assert result["oracle"]["available"] and "hr@10" in result["oracle"]["metrics"]


def test_valid_retrieval_monitors_the_reported_metric_each_epoch(syn_dir, tmp_path):
  from tfrec import config as config_lib
  run = str(tmp_path / "run")
  cfg = make_config(syn_dir, run, model="youtube_dnn", steps_per_epoch=2, epochs=2,
                    batch_size=32, validation_steps=None, valid_retrieval="full:hr@5")
  result = train_lib.train(cfg)
  values = result.history["val_hr@5"]
  assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
  # The best checkpoint is the epoch of the highest value, and its evaluation on `valid` with
  # the same protocol gives that value back.
  assert result.best["monitor"] == "val_hr@5" and result.best["mode"] == "max"
  assert result.best["value"] == max(values)
  again = retrieval.evaluate_retrieval_run(run, "valid", "full", (5,), checkpoint="best")
  assert again["metrics"]["hr@5"] == pytest.approx(max(values))
  with pytest.raises(ValueError, match="<protocol>:<metric>@<K>"):
    config_lib.TrainConfig(run_dir=run, valid_retrieval="hr@5")
  assert config_lib.parse_valid_retrieval("full:ndcg@20:500") == ("full", "ndcg@20", 20, 500)
  assert config_lib.parse_valid_retrieval("couple:hr@10") == ("couple", "hr@10", 10, 0)
  with pytest.raises(ValueError, match="max examples"):
    config_lib.parse_valid_retrieval("full:hr@20:many")
  # A cap evaluates the same sampled users as evaluate_retrieval with that cap and seed 0.
  model, cfg_, info, store = runs.restore_model(run, "best")
  capped = retrieval.RetrievalValidation(cfg_, info, store, "full:hr@5:7")
  capped.model = model
  logs = {}
  capped.on_epoch_end(0, logs)
  reader = runs.reader(cfg_, "valid", training=False, info=info, kind="matching")
  pool, _ = negative_pool(store, "valid")
  direct = retrieval.evaluate_retrieval(model, reader, pool, "full", (5,), max_examples=7)
  assert logs["val_hr@5"] == direct["metrics"]["hr@5"] and direct["counts"]["examples"] <= 7
  with pytest.raises(ValueError, match="reports K in"):
    retrieval.RetrievalValidation(cfg, *runs.restore_model(run, "best")[2:], "couple:hr@20")
  with pytest.raises(ValueError, match="not a retrieval model"):
    train_lib.train(make_config(syn_dir, str(tmp_path / "r2"), model="youtubenet",
                                validation_steps=None, valid_retrieval="full:hr@5"))
