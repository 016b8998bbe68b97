"""M5's reproduction: the rows resolve to the paper's baselines and Table 2 / Table 1 variants at
the CPU scale's sizes, Table 1's average hit ratio by hand, and the results file (per-scenario
cells, the oracle, the claims per scenario, MLM's gain per depth) from known numbers."""

import os

import numpy as np
import pytest

from tfrec.reproduce import harness
from tfrec.reproduce import m5

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALE = m5.SCALES["cpu"]


def _cfg(row):
  return harness.parse_config([f"--flagfile={os.path.join(REPO, row.flagfile)}",
                               f"--flagfile={os.path.join(REPO, SCALE.scale_flagfile)}",
                               *row.flags, "--data_dir=x", "--run_dir=y"])


def test_rows_are_the_papers_at_the_cpu_scale(monkeypatch):
  monkeypatch.chdir(REPO)  # flagfiles include configs/base.flags by a relative path
  exp = m5.experiments(SCALE)
  names = [r.name for r in exp.table2]
  assert names == list(m5.PAPER_TABLE2_H)  # every row of the paper's Table 2, its order
  models = {r.name: _cfg(r).model.name for r in exp.table2}
  assert [models[b] for b in m5.BASELINES] == [
      "youtube_dnn", "gru4rec_plus", "bst_two_tower", "sdm", "comirec_sa", "pdn", "cl4srec"]
  for row in exp.table2:
    cfg = _cfg(row)
    kw = cfg.model.kwargs
    assert kw["dim"] == 64 == SCALE.cg_dim, row.name  # the CPU scale, every row alike
    assert cfg.data.max_seq_len == 20 and cfg.train.batch_size == 2048
    assert cfg.data.valid_split == "valid" and cfg.train.epochs == 30
    assert kw["negatives"] == ("sampled" if row.name == "GRU4Rec+" else "full"), row.name
  kw = {r.name: _cfg(r).model.kwargs for r in exp.table2}
  assert kw["M5"]["cg_init"] == "dataset" and kw["M5"]["ff_dim"] == 256
  assert kw["M5"]["num_layers"] == 3 and kw["M5"]["mlp_hidden"] == 256
  assert kw["M5 w/o MM"]["multi_modal"] is False
  assert kw["M5 w/o MI"]["multi_interest"] is False
  assert kw["M5 w/o MS"]["multi_scenario"] is False
  assert kw["M5 w/ Raw Metadata"]["cg_source"] == "raw"
  assert kw["M5 w/ Raw Metadata"]["cg_init"] is None  # raw metadata replaces GraphSAGE's
  assert kw["M5 w/ Single Channel"]["channels"] == "single"
  assert (kw["M5 w/o Cate & Sub"]["bucketing"], kw["M5 w/o Cate & Sub"]["subsidiary"]) == (
      False, False)
  assert kw["M5 w/ SA"]["self_attention"] == "both" and kw["M5 w/ SA"]["sin"] is False
  assert kw["M5 w/ CGC"]["mixing"] == "cgc" and kw["M5 w/ PLE"]["mixing"] == "ple"
  # Table 1: the ID channel at each depth, with and without MLM; (3, MLM) is "M5 w/o MM".
  assert len(exp.table1) == 8 and exp.table1[6] is exp.table2[names.index("M5 w/o MM")]
  for row in exp.table1:
    k = _cfg(row).model.kwargs
    depth, mlm = (3, True) if row.name == "M5 w/o MM" else (
        int(row.name.split("L=")[1][0]), "w/ MLM" in row.name)
    assert k["multi_modal"] is False and k["num_layers"] == depth
    assert k.get("mlm", True) is mlm, row.name
  assert len(exp.rows(m5.PARTS)) == 21 + 7
  assert m5.harness_settings(SCALE, "synthetic") == {
      "eval_split": "test", "protocol": "full", "negative_pool": "auto", "retrieval_ks": (20, 100)}


def test_average_hit_ratio_is_the_mean_over_scenarios_and_ks():
  run = {"metrics": {"hr@20": 0.9, "hr@100": 0.9},
         "scenarios": {"scenario 0": {"metrics": {"hr@20": 0.1, "hr@100": 0.5}},
                       "scenario 1": {"metrics": {"hr@20": 0.3, "hr@100": 0.7}}}}
  assert m5.average_hit_ratio(run) == pytest.approx((0.1 + 0.5 + 0.3 + 0.7) / 4)
  assert m5.average_hit_ratio({"metrics": {"hr@20": 0.2, "hr@100": 0.6}}) == pytest.approx(0.4)


def _fake(seed, base, n=40):
  """A summary and arrays with scenario s's HR@20 = base + 0.1 s + 0.001 seed."""
  scen = {f"scenario {s}": {"examples": 10 * (s + 1), "users": 5,
                            "metrics": {"hr@20": base + 0.1 * s + 0.001 * seed,
                                        "hr@100": base + 0.3 + 0.1 * s + 0.001 * seed},
                            "oracle": {"hr@20": 0.95, "hr@100": 0.99}} for s in range(2)}
  summary = {"metrics": {"hr@20": base + 0.001 * seed, "hr@100": base + 0.3 + 0.001 * seed},
             "oracle": {"hr@20": 0.9, "hr@100": 0.98}, "k": 20,
             "counts": {"examples": 30, "users": 10}, "scenarios": scen, "lr": 0.002,
             "lr_grid": {"0.002": 5.0}, "best": {"monitor": "val_loss", "epoch": 3},
             "epochs_run": 6, "max_epochs": 30, "valid_split": "valid", "eval_seed": 0,
             "train_seconds": 60.0, "eval_seconds": 5.0}
  rng = np.random.default_rng(seed)
  ranks = np.where(rng.random(n) < base, 0, 500)
  arrays = {"user_ids": np.arange(n) % 10, "labels": np.ones(n, np.int64),
            "logits": np.zeros(n), "rows": np.arange(n), "ranks": ranks,
            "scenario_id": np.arange(n) % 2}
  return summary, arrays


def test_results_file_from_known_numbers(tmp_path):
  exp = m5.experiments(SCALE)
  base = {"YouTube DNN": 0.20, "CL4SRec": 0.30, "M5": 0.40, "M5 w/o MS": 0.35,
          "M5 w/o MM": 0.45}
  base.update({m5.table1_row(d, mlm): 0.3 + 0.01 * d * mlm for d in m5.DEPTHS
               for mlm in (False, True) if (d, mlm) != (3, True)})
  results, arrays = {}, {}
  for name, v in base.items():
    pairs = [_fake(s, v) for s in range(3)]
    results[name] = [p[0] for p in pairs]
    arrays[name] = [p[1] for p in pairs]
  out = str(tmp_path / "m5_synthetic.md")
  text = open(m5.write_report(results, exp, SCALE, "synthetic", "tiny", out, 60.0,
                              "python -m tfrec.reproduce --paper=m5", {}, arrays=arrays)).read()
  assert "## Table 2" in text and "## Table 1" in text
  # Per-scenario cells (S1 = scenario 0: 0.40 + 0.001 s), the whole split, the paper's HR@20.
  line = next(x for x in text.splitlines() if x.startswith("| M5 |"))
  assert "| 0.4010 ± 0.0010 | 0.7010 ± 0.0010 | 0.5010 ± 0.0010 |" in line
  assert line.endswith("| 0.4856 / 0.3881 / 0.4247 / 0.4761 |")
  assert "| oracle (planted intensities) | 0.9500 | 0.9900 | 0.9500 | 0.9900 | 0.9000 |" in text
  assert "S1 10 (33%), S2 20 (67%)" in text
  # Claims over all examples and per scenario; M5 > M5 w/o MM does not hold (0.40 vs 0.45).
  assert "| M5 > YouTube DNN (HR@20) | 0.4010 vs 0.2010" in text
  assert "| M5 > CL4SRec (S2, HR@20) | 0.5010 vs 0.4010" in text
  assert any(x.startswith("| M5 > M5 w/o MM (HR@20)") and x.endswith("| does not hold |")
             for x in text.splitlines())
  # Table 1: the gain at depth d is 0.01 d over each scenario's HR@20 and HR@100.
  gains = next(x for x in text.splitlines() if x.startswith("| MLM gain (p) |"))
  assert "+0.0100" in gains and "+0.0400" in gains
  assert "+0.0077 / +0.0124 / +0.0230 / +0.0288" in gains  # the paper's
  assert "MLM's gain grows with L" in text and "yes here" in text
  # The smallest scenario's gain over w/o MS (0.05 in both here): the sentence names it.
  assert "M5 - M5 w/o MS (HR@20) by scenario, fewest test examples first: S1 (33% of " in text
  assert "The smallest scenario ties for the largest gain." in text  # 0.05 in both
  assert m5._smallest_verdict([0.2, 0.1]) == "The smallest scenario gains most."
  assert m5._smallest_verdict([0.0, 0.1]) == "The smallest scenario does not gain most."
  assert "val_loss at lr 0.002" in text


def test_the_regime_maps_scenario_metric_reads_that_scenarios_examples_only():
  from tfrec.reproduce import sweep
  assert sweep.scenario_metric("hr@20 in scenario 1") == ("hr@20", 1)
  assert sweep.scenario_metric("hr@20") == ("hr@20", None)
  assert sweep.metric_label("hr@20 in scenario 1") == "HR@20 in scenario 1"
  users = np.arange(6)
  scen = np.array([0, 1, 1, 0, 1, 0])

  def arrays(ranks):
    return {"user_ids": users, "labels": np.ones(6, np.int64), "logits": np.zeros(6),
            "rows": np.arange(6), "ranks": np.array(ranks), "scenario_id": scen}

  def summary(all_hr, s1_hr):
    return {"metrics": {"hr@20": all_hr}, "k": 20,
            "scenarios": {"scenario 1": {"metrics": {"hr@20": s1_hr}}}}
  # In scenario 1 (examples 1, 2, 4) a hits 3 of 3, b 1 of 3; overall 4/6 vs 3/6.
  a = arrays([50, 0, 3, 60, 19, 0])
  b = arrays([0, 40, 2, 0, 90, 70])
  results = {"A": [summary(4 / 6, 1.0)] * 2, "B": [summary(3 / 6, 1 / 3)] * 2}
  point = sweep.measure(results, {"A": [a] * 2, "B": [b] * 2},
                        sweep.Claim("A > B", "A", "B"), "hr@20 in scenario 1", 2.0)
  assert (point.mean_a, point.mean_b) == (1.0, pytest.approx(1 / 3))
  assert point.difference.estimate == pytest.approx(2 / 3)
  whole = sweep.measure(results, {"A": [a] * 2, "B": [b] * 2},
                        sweep.Claim("A > B", "A", "B"), "hr@20", 2.0)
  assert whole.difference.estimate == pytest.approx(1 / 6)
  assert m5.SWEEP_METRICS == ("hr@20", "hr@20 in scenario 1")


def test_the_reports_name_the_epoch_monitor_the_rows_used():
  from tfrec.reproduce import tables
  assert tables.retrieval_monitor({"best": {"monitor": "val_loss"}}, "the loss") == "the loss"
  assert tables.retrieval_monitor({}, "the loss") == "the loss"
  text = tables.retrieval_monitor({"best": {"monitor": "val_hr@10"}}, "the loss")
  assert text.startswith("HR@10 on the valid split") and "`val_hr@10`" in text


def test_a_claim_against_a_row_that_never_hits_has_no_relative_gain():
  from tfrec.reproduce import tables
  assert tables.gain_text(0.2, 0.1) == "+100.00%" and tables.gain_text(0.1, 0.0) == "gain n/a"
  runs = [{"metrics": {"hr@20": 0.0}, "scenarios": {"scenario 1": {"metrics": {"hr@20": 0.0}}}}]
  results = {"A": [{"metrics": {"hr@20": 0.1},
                    "scenarios": {"scenario 1": {"metrics": {"hr@20": 0.1}}}}] * 2,
             "B": runs * 2}
  rows = tables.group_claim_rows([("A > B", "A", "B")], results, {}, ["scenario 1"],
                                 "scenarios", "hr@20", "HR@20")
  assert rows[0][1] == "0.1000 vs 0.0000 (gain n/a)" and rows[0][2] == "+0.1000 n/a"
