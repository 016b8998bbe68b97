"""COUPLE's reproduction: the rows resolve to the paper's settings on tag-based items, the
harness trains and evaluates a retrieval row with the §4.1 protocol (warm and cold users apart,
arrays for the bootstrap), the group arrays by hand, and the results file from known numbers."""

import dataclasses
import os

import numpy as np
import pytest

from tfrec.reproduce import couple
from tfrec.reproduce import harness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(row, *more):
  return harness.parse_config([f"--flagfile={os.path.join(REPO, row.flagfile)}",
                               f"--flagfile={os.path.join(REPO, couple.SCALES['cpu'].scale_flagfile)}",
                               "--data_dir=x", "--run_dir=y", *more])


def test_rows_are_the_papers_on_tag_based_items_with_its_settings():
  exp = couple.experiments(couple.SCALES["cpu"])
  assert [r.name for r in exp.table4] == list(couple.PAPER_TABLE4_AMAZON)
  assert [r.name for r in exp.table5][-1] == "COUPLE" == exp.fig4[-1].name
  shares = [_cfg(r, *r.flags).data.source_share for r in exp.fig4]
  assert shares == [0.2, 0.4, 0.6, 0.8, 1.0]
  assert len(exp.table5) == len(couple.PAPER_TABLE5)
  for row in exp.table4 + exp.table5:
    cfg = _cfg(row)
    assert cfg.model.kwargs["item_features"] == ["tags"], row.name  # §4.2: no id embedding
    assert cfg.model.kwargs["dim"] == 64 and cfg.data.max_seq_len == 8
    assert cfg.train.batch_size == 256 and cfg.data.valid_split == "valid"
    assert cfg.train.epochs == 20 and cfg.train.early_stopping_patience == 2
  c = _cfg(exp.table4[-1])
  assert c.model.name == "couple" and c.train.learning_rate == pytest.approx(1e-4)
  assert c.model.kwargs["temperature"] == pytest.approx(0.03)
  assert c.model.kwargs["queue_size"] == 2560 and c.model.kwargs["negatives"] == "queue"
  assert c.model.kwargs["dropout"] == pytest.approx(0.2)
  diag = {r.name: _cfg(r, *r.flags).model.kwargs for r in exp.diag}
  assert {n: (k["tau_rate"], k["tau_every"]) for n, k in diag.items()} == {
      "Base + memory tree, tau over the run": (0.004, 100), "COUPLE, tau over the run": (0.004, 100)}
  assert diag["Base + memory tree, tau over the run"]["group"] and diag[
      "COUPLE, tau over the run"]["negatives"] == "queue"
  ablations = {r.name: _cfg(r).model.kwargs for r in exp.table5}
  assert (ablations["Base (history + domain)"]["content"],
          ablations["Base (history + domain)"]["group"]) == (False, False)
  assert ablations["Base + user content"]["content"] and not ablations["Base + user content"]["group"]
  assert ablations["Base + memory tree"]["group"] and not ablations["Base + memory tree"]["content"]
  assert ablations["All + batch negatives"]["negatives"] == "in_batch"
  assert couple.harness_settings(couple.SCALES["cpu"], "synthetic") == {
      "eval_split": "test_cold", "protocol": "couple", "negative_pool": "all"}
  world = couple.world_config(couple.SCALES["cpu"], tag_overlap=0.6)
  assert world.num_users == 2000 and world.cold_user_share == 0.3 and world.tag_overlap == 0.6


def test_group_arrays_keep_one_groups_examples_and_their_ranks():
  arrays = {"A": [{"user_ids": np.array([1, 2, 3, 4]), "labels": np.ones(4, np.int64),
                   "logits": np.zeros(4), "rows": np.arange(4), "ranks": np.array([0, 5, 9, 2]),
                   "cold_user": np.array([0, 1, 0, 1])}]}
  cold = couple.group_arrays(arrays, "cold users")["A"][0]
  assert cold["user_ids"].tolist() == [2, 4] and cold["ranks"].tolist() == [5, 2]
  assert cold["rows"].tolist() == [0, 1]
  warm = couple.group_arrays(arrays, "warm users")["A"][0]
  assert warm["user_ids"].tolist() == [1, 3] and warm["ranks"].tolist() == [0, 9]
  no_cold = {"A": [dict(arrays["A"][0], cold_user=np.zeros(4, np.int64))]}
  assert couple.group_arrays(no_cold, "cold users") is None


@pytest.fixture(scope="module")
def cold_world(tmp_path_factory):
  """A tiny world with cold users and cold items (matching/test_cold)."""
  from tfrec.datasets import synthetic
  d = str(tmp_path_factory.mktemp("couple") / "world")
  cfg = dataclasses.replace(synthetic.get_config("tiny"), num_users=80, cold_user_share=0.3,
                            cold_item_share=0.2)
  synthetic.generate(cfg, d, num_shards=1, verbose=False)
  return d


def test_a_retrieval_row_trains_and_is_evaluated_by_user_group(cold_world, tmp_path):
  scale = tmp_path / "scale.flags"
  scale.write_text("--model_args=dim=8,ff_dim=8,queue_size=64\n--batch_size=32\n--epochs=2\n"
                   "--steps_per_epoch=3\n--max_seq_len=8\n--valid_split=valid\n"
                   "--early_stopping_patience=1\n--backup_every_steps=0\n")
  row = harness.Row("COUPLE", os.path.join(REPO, "configs/couple/couple.flags"))
  settings = harness.Settings(data_dir=cold_world, work_dir=str(tmp_path / "work"), seeds=1,
                              scale_flagfile=str(scale), lr_grid=(1e-3,),
                              **couple.harness_settings(couple.SCALES["cpu"], "synthetic"))
  runner = harness.Runner(settings)
  (r,) = runner.run_all([row])[row.name]
  assert r["best"]["monitor"] == "val_loss" and r["best"]["mode"] == "min"
  assert r["k"] == 5 and set(r["metrics"]) >= {"hr@5", "hr@10", "ndcg@5", "ndcg@10"}
  groups = r["groups"]
  assert set(groups) == {"warm users", "cold users"}
  n = r["counts"]["examples"]
  assert groups["warm users"]["examples"] + groups["cold users"]["examples"] == n
  # The whole split's HR@10 is the examples' mean: the groups' weighted mean.
  mixed = sum(g["examples"] * g["metrics"]["hr@10"] for g in groups.values()) / n
  assert r["metrics"]["hr@10"] == pytest.approx(mixed)
  arrays = runner.arrays(row, 0)
  assert len(arrays["ranks"]) == len(arrays["user_ids"]) == n
  assert int(arrays["cold_user"].sum()) == groups["cold users"]["examples"]
  assert np.mean(arrays["ranks"] < 10) == pytest.approx(r["metrics"]["hr@10"])
  # The evaluation reads the matching split's manifest and the pool enters the key.
  settings_key = runner.eval_settings("matching")
  assert settings_key["kind"] == "matching" and settings_key["negative_pool"] == "all"
  assert settings_key["split_manifest"] is not None
  # The results file from these runs: the CI at K = 10 is an interval, the groups are there.
  out = str(tmp_path / "couple_synthetic.md")
  results = {row.name: [r]}
  exp = couple.Experiments((row,), ())
  text = open(couple.write_report(results, exp, couple.SCALES["cpu"], "synthetic", "tiny", out,
                                  1.0, "cmd", {}, arrays={row.name: [arrays]})).read()
  assert "## Table 4: cold-item retrieval" in text and "cold users: HR@10" in text
  line = next(x for x in text.splitlines() if x.startswith("| COUPLE |"))
  assert "n/a" not in line.split("|")[6]  # HR@10 95% CI


def _fake(name, seed, hr10, cold_hr10):
  metrics = {"hr@5": hr10 / 2, "hr@10": hr10, "ndcg@5": hr10 / 4, "ndcg@10": hr10 / 3}
  groups = {"warm users": {"examples": 60, "users": 50,
                           "metrics": dict(metrics, **{"hr@10": hr10 + 0.01})},
            "cold users": {"examples": 40, "users": 30,
                           "metrics": dict(metrics, **{"hr@10": cold_hr10})}}
  return {"row": name, "seed": seed, "metrics": metrics, "oracle": {}, "k": 5,
          "counts": {"examples": 100, "users": 80}, "groups": groups, "lr": 1e-3,
          "lr_grid": {"0.0001": 3.1, "0.001": 3.0},
          "best": {"monitor": "val_loss", "mode": "min", "value": 3.0, "epoch": 2},
          "epochs_run": 4, "max_epochs": 20, "patience": 2, "valid_split": "valid",
          "eval_seed": 0}


def test_results_file_from_known_numbers(tmp_path):
  exp = couple.experiments(couple.SCALES["cpu"])
  base = {"DSSM": 0.10, "DeepCoNN": 0.12, "YouTube DNN": 0.15, "ICAN": 0.16, "SASRec": 0.17,
          "ComiRec-SA": 0.165, "COUPLE": 0.20, "Base (history + domain)": 0.17,
          "Base + user content": 0.18, "Base + memory tree": 0.19,
          "All + batch negatives": 0.205}
  base.update({couple.share_row(p): 0.1 + 0.1 * p for p in couple.SOURCE_SHARES})
  base.update({"Base + memory tree, tau over the run": 0.25, "COUPLE, tau over the run": 0.21})
  results = {n: [_fake(n, s, v + 0.001 * s, v - 0.05 + 0.001 * s) for s in range(3)]
             for n, v in base.items()}
  out = str(tmp_path / "couple_synthetic.md")
  text = open(couple.write_report(results, exp, couple.SCALES["cpu"], "synthetic", "tiny", out,
                                  60.0, "python -m tfrec.reproduce --paper=couple", {})).read()
  assert "## Table 4" in text and "## Table 5" in text
  # Mean ± std over 3 seeds (0.200, 0.201, 0.202), the warm and cold groups beside, the paper's.
  line = next(x for x in text.splitlines() if x.startswith("| COUPLE | 0.1005"))
  assert "| 0.2010 ± 0.0010 |" in line and "| 0.2110 ± 0.0010 |" in line
  assert "| 0.1510 ± 0.0010 |" in line and "| 0.0775 / 0.1336 / 0.0492 / 0.0671 |" in line
  # COUPLE > SASRec holds (0.201 vs 0.171 over 3 seeds); the FIFO queue > batch negatives
  # does not (0.201 vs 0.206); per group too.
  assert "| COUPLE > SASRec (HR@10) | 0.2010 vs 0.1710" in text
  assert any(x.startswith("| FIFO queue > batch negatives (HR@10)") and x.endswith(
      "| does not hold |") for x in text.splitlines())
  assert "| COUPLE > SASRec (cold users, HR@10) | 0.1510 vs 0.1210" in text
  assert "val_loss at lr 0.0001" in text  # the model selection names the retrieval monitor
  # Fig. 4: one row per share (20%: 0.12 + 0.001 s for all users, 0.07 + ... for cold ones).
  assert "| 20% | 0.1210 ± 0.0010 |" in text and "| 100% | 0.2010 ± 0.0010 |" in text
  # The temperature diagnostics: their table and the comparison with the paper's schedule.
  assert "## Diagnostics (not in the paper): the Gumbel temperature over the run" in text
  assert "| run-length tau > A.1.2's tau (Base + memory tree) (HR@10) | 0.2510 vs 0.1910" in text
  for metric in ("hr10", "ndcg10"):
    png = tmp_path / f"couple_synthetic_fig4_{metric}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.name in text


def test_the_regime_maps_difference_is_at_the_claims_own_k():
  from tfrec.reproduce import sweep
  users = np.array([0, 1, 2, 3])

  def arrays(ranks):
    return {"user_ids": users, "labels": np.ones(4, np.int64), "logits": np.zeros(4),
            "rows": np.arange(4), "ranks": np.array(ranks)}
  # HR@10: a hits 3 of 4 (ranks 0, 7, 9), b 1 of 4; at K = 5 (the results' first K) 1 vs 1.
  results = {"A": [{"metrics": {"hr@10": 0.75}, "k": 5}, {"metrics": {"hr@10": 0.75}, "k": 5}],
             "B": [{"metrics": {"hr@10": 0.25}, "k": 5}, {"metrics": {"hr@10": 0.25}, "k": 5}]}
  point = sweep.measure(results, {"A": [arrays([0, 7, 9, 30])] * 2,
                                  "B": [arrays([3, 12, 40, 55])] * 2},
                        sweep.Claim("A > B", "A", "B"), "hr@10", 0.6)
  assert point.difference.estimate == pytest.approx(0.5)
  assert point.mean_a == 0.75 and point.mean_b == 0.25


def test_leaf_statistics_by_hand():
  from tfrec.evaluation import leaf_groups
  eye = np.eye(4, 8)  # 4 orthonormal leaves in 8 dimensions
  s = leaf_groups.leaf_statistics(eye)
  assert s["coherence"] == pytest.approx(0.0) and s["srip"] == pytest.approx(0.0)
  assert s["effective_rank"] == pytest.approx(4.0)
  same = np.tile([[3.0, 4.0]], (5, 1))  # 5 leaves on one direction: |cos| 1, rank 1
  s = leaf_groups.leaf_statistics(same)
  assert s["coherence"] == pytest.approx(1.0) and s["effective_rank"] == pytest.approx(1.0)
  # Gram of the smaller side (2 x 2): S^T S = [[45, 60], [60, 80]], eigenvalues 0 and 125.
  assert s["srip"] == pytest.approx(124.0)
  xy, method = leaf_groups.embed_2d(np.r_[eye, -eye])
  assert xy.shape == (8, 2) and method


def test_leaf_slots_of_a_couple_model_and_the_fig5_section(tmp_path):
  import tensorflow as tf
  from tfrec.evaluation import leaf_groups
  from tfrec.models.couple import COUPLE
  from conftest import NUM_ITEMS, tiny_store
  m = COUPLE(NUM_ITEMS, dim=8, num_tags=6, ff_dim=8, branching=(4, 3), top_k=2,
             negatives="in_batch").build_and_fill(tiny_store())
  seq = tf.constant([[1, 2, 6]], tf.int64)
  m({"seq_item_ids": seq, "seq_mask": seq > 0, "seq_domain_ids": tf.zeros_like(seq)})
  slots, parents = leaf_groups.leaf_slots(m)
  assert slots.shape == (12, 8) and parents.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
  with pytest.raises(ValueError, match="no built memory tree"):
    leaf_groups.leaf_slots(COUPLE(NUM_ITEMS, dim=8, num_tags=6, group=False))
  stats_a = [{"coherence": 0.05 + 0.01 * s, "srip": 0.1, "effective_rank": 60.0 + s}
             for s in range(3)]
  stats_b = [{"coherence": 0.40 + 0.01 * s, "srip": 9.0 + s, "effective_rank": 20.0 + s}
             for s in range(3)]
  xy = np.random.default_rng(0).normal(size=(12, 2))
  extra = {"stats": {"COUPLE": stats_a, couple.NO_ORTHOGONALITY: stats_b},
           "embedding": {"COUPLE": (xy, parents, "PCA"),
                         couple.NO_ORTHOGONALITY: (xy, parents, "PCA")}}
  lines = couple._fig5(extra, {}, str(tmp_path), "couple_synthetic")
  text = "\n".join(lines)
  assert "| mean absolute cosine between leaves | 0.0600 ± 0.0100 | 0.4100 ± 0.0100 |" in text
  (rank_line,) = [x for x in text.splitlines() if x.startswith("| effective rank |")]
  assert rank_line.endswith("with > w/o: 5.19e-07**, holds |")  # 61 vs 21 over 3 seeds
  assert (tmp_path / "couple_synthetic_fig5_leaves.png").read_bytes()[:4] == b"\x89PNG"
