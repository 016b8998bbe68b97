"""THACIL's reproduction plan and results file from known per-seed numbers: Table 2 with the
paper's column, Fig. 4's top-K tables and PNGs, the paper's orderings with their verdicts, and
each row's flagfile resolving to the paper's settings (plus the CPU overlay)."""

import os

import numpy as np
import pytest

from tfrec.reproduce import harness
from tfrec.reproduce import thacil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KS = thacil.SCALES["cpu"].topk_ks


def _fake(name, seed, gauc, topk):
  metrics = {"gauc": gauc, "auc": gauc - 0.02}
  for k in KS:
    for m, _ in thacil.FIG4:
      metrics[f"topk_{m}@{k}"] = topk / k if m == "precision" else topk
  oracle = {"gauc": 0.8, "auc": 0.82, **{f"topk_{m}@{k}": 0.9 for k in KS
                                         for m, _ in thacil.FIG4}}
  return {"row": name, "seed": seed, "metrics": metrics, "oracle": oracle, "k": 0,
          "lr": 0.001, "lr_grid": {"0.001": 0.6, "0.003": 0.62},
          "best": {"monitor": "val_auc", "mode": "max", "value": 0.62, "epoch": 1 + seed},
          "epochs_run": 2 + seed, "max_epochs": 4, "patience": 1, "valid_split": "valid",
          "eval_seed": 0}


def test_table2_rows_are_the_papers_in_its_order_with_their_flagfiles():
  exp = thacil.experiments(thacil.SCALES["cpu"])
  assert [r.name for r in exp.table2] == list(thacil.PAPER_TABLE2)
  for row in exp.table2:
    cfg = harness.parse_config([f"--flagfile={os.path.join(REPO, row.flagfile)}",
                                f"--flagfile={os.path.join(REPO, thacil.SCALES['cpu'].scale_flagfile)}",
                                "--data_dir=x", "--run_dir=y"])
    # The sequence models read n = 160 behaviours; BPR and NCF read no history.
    assert cfg.data.max_seq_len == (50 if row.name in ("BPR", "NCF") else 160)
    assert cfg.train.batch_size == 256
    assert cfg.train.clip_norm == 5 and cfg.data.valid_split == "valid"
    assert cfg.model.kwargs["dim"] == 64 and cfg.model.kwargs["l2"] == pytest.approx(5e-5)
  assert thacil.harness_settings(thacil.SCALES["cpu"], "synthetic") == {
      "eval_split": "test_cold", "protocol": "none", "topk_ks": KS, "extra_flags": ()}
  # MovieLens has no visual feature: every row embeds items from [title; category].
  (flag,) = thacil.harness_settings(thacil.SCALES["cpu"], "movielens")["extra_flags"]
  for row in exp.table2:
    cfg = harness.parse_config([f"--flagfile={os.path.join(REPO, row.flagfile)}", flag,
                                "--data_dir=x", "--run_dir=y"])
    assert cfg.model.kwargs["item_features"] == ["title", "category"]
  assert thacil.harness_settings(thacil.SCALES["cpu"], "microvideo")["topk_ks"] == tuple(
      range(10, 101, 10))
  assert thacil.world_config(thacil.SCALES["cpu"]).num_users == 300
  assert thacil.world_config(thacil.SCALES["cpu"], interest_drift_per_day=0.5
                             ).interest_drift_per_day == 0.5


def test_results_file_from_known_numbers(tmp_path):
  exp = thacil.experiments(thacil.SCALES["cpu"])
  base = {"BPR": 0.55, "LSTM": 0.60, "LSTM+Attention": 0.61, "ATRank": 0.605, "NCF": 0.58,
          "THACIL": 0.63}
  results = {n: [_fake(n, s, g + 0.001 * s, g / 2) for s in range(3)] for n, g in base.items()}
  out = str(tmp_path / "thacil_synthetic.md")
  path = thacil.write_report(results, exp, thacil.SCALES["cpu"], "synthetic", "tiny", out, 60.0,
                             "python -m tfrec.reproduce --paper=thacil", {})
  text = open(path).read()
  # Table 2: mean ± std, no arrays -> CI n/a, Welch p against the best baseline
  # (LSTM+Attention: 0.611 vs THACIL 0.631, t = 0.02 / sqrt(2e-6 / 3) = 24.5, df 4).
  assert "| THACIL | 0.6310 ± 0.0010 | n/a | 8.24e-06** |" in text
  assert "| LSTM+Attention | 0.6110 ± 0.0010 | n/a | (best baseline) |" in text
  assert text.count("| 0.684 |") == 1  # the paper's THACIL AUC beside ours
  assert "| oracle (planted P(click)) | 0.8000 |" in text
  # Fig. 4: one table per metric over K, the oracle row, a PNG per metric.
  assert "| Method | K=1 | K=2 | K=3 | K=5 | K=10 |" in text
  # precision@K = 0.315 / K, the other metrics 0.315 at every K.
  assert "| THACIL | 0.3150 ± 0.0000 | 0.1575 ± 0.0000 | 0.1050 ± 0.0000 |" in text
  for metric, _ in thacil.FIG4:
    png = tmp_path / f"thacil_synthetic_fig4_{metric}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.name in text
  # The orderings: THACIL > ATRank holds; ATRank > LSTM+Attention does not.
  def claim(start):
    return next(x for x in text.splitlines() if x.startswith("| " + start))
  assert claim("THACIL > ATRank (GAUC)").endswith("| holds |")
  assert claim("ATRank > LSTM+Attention (GAUC)").endswith("| does not hold |")
  assert claim("THACIL > NCF (the paper's t-test) (AUC)").endswith("| holds |")
  assert "| BPR | 0.6000 | 0.6200 | 0.001 | 1, 2, 3 | 2/4, 3/4, 4/4 |" in text
  assert "BARS" in text and "0.6883" in text
  assert "the `thacil` preset with 300 users" in text and "visual feature and category" in text
  # On MovieLens the text names its items and no synthetic world.
  ml = open(thacil.write_report(results, exp, thacil.SCALES["cpu"], "movielens", "ML-1M",
                                str(tmp_path / "thacil_movielens.md"), 60.0, "cmd", {})).read()
  assert "preset" not in ml and "synthetic world" not in ml
  assert "title words and category only" in ml and "another dataset" in ml


def test_report_intervals_come_from_the_arrays(tmp_path):
  rng = np.random.default_rng(0)
  users = np.repeat(np.arange(30), 6)
  labels = np.tile([1, 0, 1, 0, 0, 1], 30)
  exp = thacil.experiments(thacil.SCALES["cpu"])
  arrays, results = {}, {}
  for i, row in enumerate(exp.table2):
    arrays[row.name] = [{"user_ids": users, "labels": labels,
                         "logits": labels * 0.2 * i + rng.normal(size=len(users)),
                         "target_len": np.zeros(len(users)), "rows": np.zeros(0, np.int64),
                         "ranks": np.zeros(0, np.int64)} for _ in range(2)]
    results[row.name] = [_fake(row.name, s, 0.6, 0.5) for s in range(2)]
  out = str(tmp_path / "thacil_synthetic.md")
  text = open(thacil.write_report(results, exp, thacil.SCALES["cpu"], "synthetic", "tiny", out,
                                  1.0, "cmd", {}, arrays=arrays)).read()
  line = next(x for x in text.splitlines() if x.startswith("| THACIL | 0.6000"))
  assert "n/a" not in line.split("|")[3] and "[" in line  # the GAUC CI
  assert "95% CIs at K = 3" in text
