"""The reproduction harness: Fig. 5's activity groups on a hand-made evaluation, the SEMI
experiment plan (shared runs, K = 0 / MLEN = 0 = w/o CCL), the results file written from known
per-seed numbers, and one tiny end-to-end row pair (train, pre-train, evaluate, cache)."""

import json
import os

import numpy as np

from tfrec.reproduce import harness
from tfrec.reproduce import semi

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_activity_groups_by_hand():
  arrays = {
      "target_len": np.array([0, 1, 3, 4, 30, 30]),
      "labels": np.array([1, 0, 1, 0, 1, 0]),
      "logits": np.array([0.9, 0.1, 0.2, 0.8, 0.5, 0.5]),
      # Ranked positives: examples 0 (group 0-1), 2 (2-5) and 4 (6-30), 0-based ranks.
      "rows": np.array([0, 2, 4]),
      "ranks": np.array([0, 3, 1]),
  }
  groups = harness.activity_groups(arrays, k=1, edges=[1, 5, 30])
  assert list(groups) == ["0-1", "2-5", "6-30"]
  assert groups["0-1"] == {"examples": 2, "auc": 1.0, "ranked": 1, "hr@1": 1.0}
  assert groups["2-5"]["auc"] == 0.0 and groups["2-5"]["hr@1"] == 0.0
  assert groups["6-30"]["auc"] == 0.5  # a tie
  assert groups["6-30"]["hr@1"] == 0.0  # one negative scored above the positive
  assert harness.activity_groups(arrays, k=2, edges=[1, 5, 30])["6-30"]["hr@2"] == 1.0


def test_quantile_edges_split_lengths_into_about_equal_groups():
  lens = np.arange(100)  # 0..99: quintiles end at 19, 39, 59, 79, 99
  assert harness.quantile_edges(lens) == [19, 39, 59, 79, 99]
  assert harness.group_labels([19, 39, 59, 79, 99]) == ["0-19", "20-39", "40-59", "60-79",
                                                        "80-99"]
  # Repeated lengths merge groups rather than making empty ones.
  assert harness.quantile_edges(np.array([2] * 50 + [7] * 50)) == [2, 7]
  assert harness.group_labels([2, 7]) == ["0-2", "3-7"]


def test_saved_arrays_keep_ranks_with_ties_against_the_positive(tmp_path):
  path = str(tmp_path / "a.npz")
  harness.save_arrays(path, {"target_len": [1, 2], "labels": [1, 0], "logits": [0.3, 0.1],
                             "rows": np.array([0]),
                             "scores": np.array([[1.0, 2.0, 1.0, 0.0]])})
  with np.load(path) as f:
    assert f["ranks"].tolist() == [2]  # 2.0 above and the tie at 1.0 count against it
    assert f["target_len"].tolist() == [1, 2]


def test_semi_plan_shares_runs_and_puts_wo_ccl_at_zero():
  exp = semi.experiments(semi.SCALES["cpu"])
  semi_w = dict((r.name, r) for _, r in exp.table1)["SEMI w. CCL"]
  assert dict(exp.fig3)[0].name == "SEMI w/o CCL" and dict(exp.fig4)[0].name == "SEMI w/o CCL"
  assert dict(exp.fig3)[semi.SCALES["cpu"].default_k] is semi_w
  assert dict(exp.fig4)[semi.SCALES["cpu"].default_mlen] is semi_w
  rows = exp.rows(["table1", "table2", "fig3", "fig4"])
  assert len({r.name for r in rows}) == len(rows)  # every run once
  # 5 (table 1) + 5 more (table 2) + 3 other K + 3 other MLEN
  assert len(rows) == 5 + 5 + 3 + 3
  assert len(exp.rows(["diag"])) == 6 and len(exp.rows(["table2", "diag"])) == 6 + 3
  pretrain = {r.pretrain.name for r in rows if r.pretrain}
  assert pretrain == {"CCL K=256 MLEN=10", "CCL K=64 MLEN=10", "CCL K=128 MLEN=10",
                      "CCL K=512 MLEN=10", "CCL K=256 MLEN=1", "CCL K=256 MLEN=5",
                      "CCL K=256 MLEN=20"}
  normalised = [r for r in exp.rows(["diag"]) if r.pretrain and "normalised" in r.name]
  assert {r.pretrain.name for r in normalised} == {"CCL K=256 MLEN=10 normalised"}
  assert all("--normalize" in r.pretrain.flags for r in normalised)
  for r in rows:
    for f in (r.flagfile,) + ((r.pretrain.flagfile,) if r.pretrain else ()):
      assert os.path.exists(os.path.join(REPO, f)), f


def fake(name, seed, auc, hr):
  return {"row": name, "seed": seed, "metrics": {"auc": auc, "hr@3": hr},
          "oracle": {"auc": 0.8, "hr@3": 0.6}, "k": 3}


def test_results_file_from_known_numbers(tmp_path):
  exp = semi.experiments(semi.SCALES["cpu"])
  base = {"DIN": 0.60, "BST": 0.62, "YouTubeNet": 0.58, "Cross-BST": 0.64,
          "SEMI-Product w/o CCL": 0.55, "SEMI-Micro-Video w/o CCL": 0.61, "SEMI w/o CCL": 0.66,
          "SEMI-Product w. CCL": 0.57, "SEMI-Micro-Video w. CCL": 0.60, "SEMI w. CCL": 0.67}
  for k in (64, 128, 512):
    base[f"SEMI w. CCL (K={k})"] = 0.665
  for m in (1, 5, 20):
    base[f"SEMI w. CCL (MLEN={m})"] = 0.662

  for name in ("SEMI w. CCL (normalised q, k)", "SEMI-Product w. CCL (normalised q, k)",
               "SEMI w. CCL (attention blocks only)"):
    base[name] = 0.5

  results = {}
  for name, auc in base.items():
    results[name] = [fake(name, s, auc + 0.001 * s, auc - 0.2 + 0.001 * s) for s in range(3)]
  # Fig. 5 arrays: 10 examples of history lengths 0..9 (quintiles of 2); the w. CCL model
  # ranks the least active group's examples perfectly, the w/o model inversely.
  lens = np.arange(10)
  labels = np.array([1, 0] * 5)
  inverse = np.where(labels == 1, 0.0, 1.0)
  best_first = np.where(lens < 2, 1.0 - inverse, inverse)
  def arrays(logits):
    return {"target_len": lens, "labels": labels, "logits": logits,
            "rows": np.array([0, 2]), "ranks": np.array([0, 5])}
  group_arrays = {"SEMI w/o CCL": [arrays(inverse)] * 3,
                  "SEMI w. CCL": [arrays(best_first)] * 3}
  out = str(tmp_path / "semi_synthetic.md")
  with open(str(tmp_path / "semi_synthetic.notes.md"), "w") as f:
    f.write("Hand-written analysis.")
  semi.write_report(results, exp, semi.SCALES["cpu"], "synthetic", "tiny", out, 60.0,
                    "python -m tfrec.reproduce", {}, group_arrays=group_arrays)
  text = open(out).read()
  assert "| Cross-Domain | SEMI w. CCL | 0.6710 ± 0.0010 |" in text
  assert "(baseline)" in text  # Cross-BST is the best baseline on both metrics
  assert "Oracle ceiling** (the generator's planted P(click)): AUC 0.8000" in text
  assert "| SEMI w. CCL > SEMI w/o CCL (AUC) |" in text
  assert "Cross-BST > BST (target only) (AUC) | 0.6410 vs 0.6210" in text
  assert "SEMI-Micro-Video > SEMI-Product (w/o CCL) (AUC)" in text
  assert "| AUC | 0-1 | 2 | 0.0000 | 1.0000 |" in text  # Fig. 5's least active group
  assert "largest CCL AUC gain in the least active group (0-1 target events) | 0-1: +1.0000" \
      in text
  assert "| the same for SEMI-Product | SEMI-Product w. CCL (normalised q, k) | 0.5010" in text
  assert "Hand-written analysis." in text
  for fig in ("fig3_auc", "fig3_hr3", "fig4_auc", "fig4_hr3", "fig5_auc", "fig5_hr3"):
    path = tmp_path / f"semi_synthetic_{fig}.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig
    assert f"semi_synthetic_{fig}.png" in text


def test_tiny_rows_train_evaluate_and_cache(syn_dir, tmp_path):
  flags_dir = tmp_path / "flags"
  flags_dir.mkdir()
  scale = flags_dir / "scale.flags"
  scale.write_text("--dim=8\n--num_heads=2\n--ff_dim=8\n--mlp_units=8\n--batch_size=64\n"
                   "--epochs=1\n--steps_per_epoch=3\n--max_seq_len=10\n--validation_steps=0\n"
                   "--backup_every_steps=0\n")
  pre = flags_dir / "pre.flags"
  pre.write_text("--dim=8\n--num_heads=2\n--ff_dim=8\n--batch_size=16\n--queue_size=32\n"
                 "--epochs=1\n--steps_per_epoch=3\n--max_seq_len=10\n--backup_every_steps=0\n")
  ccl = harness.Pretrain("CCL tiny", os.path.join(REPO, semi.CCL_FLAGS),
                         ("--train_split=train",))
  rows = [harness.Row("Cross-BST", os.path.join(REPO, "configs/baselines/cross_bst.flags")),
          harness.Row("SEMI w. CCL", os.path.join(REPO, semi.SEMI_FLAGS), pretrain=ccl)]
  settings = harness.Settings(data_dir=syn_dir, work_dir=str(tmp_path / "work"), seeds=1,
                              scale_flagfile=str(scale), pretrain_flagfile=str(pre),
                              protocol="couple")
  runner = harness.Runner(settings)
  results = runner.run_all(rows)
  for row in rows:
    (r,) = results[row.name]
    assert 0.0 <= r["metrics"]["auc"] <= 1.0 and r["k"] == 5 and r["checkpoint"] == "best"
    arrays = runner.arrays(row, 0)
    assert len(arrays["target_len"]) == r["counts"]["examples"]
    assert len(arrays["ranks"]) == r["counts"]["ranked_positives"]
  cfg = json.load(open(os.path.join(runner.row_dir(rows[1], 0), "config.json")))
  assert cfg["train"]["init_from"] == runner.pretrain_dir(ccl, 0)
  assert cfg["model"]["kwargs"]["dim"] == 8 and cfg["train"]["seed"] == 0
  # A second runner finds every (row, seed) cached: nothing is trained again.
  again = harness.Runner(settings)
  same = lambda x: json.dumps(x, sort_keys=True)  # noqa: E731  (NaN != NaN as floats)
  assert same(again.run_all(rows)) == same(results) and again.timings == {}
