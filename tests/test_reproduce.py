"""The reproduction harness: Fig. 5's activity groups on a hand-made evaluation, the SEMI
experiment plan (shared runs, K = 0 / MLEN = 0 = w/o CCL), the results file written from known
per-seed numbers, the cache keys (a changed flag re-runs exactly what it changes, with training
and evaluation faked), a tiny row that never opens a test shard while it trains, and (slow) a
tiny pre-trained row end to end (pre-train, train on valid, evaluate, cache)."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from tfrec import config as config_lib
from tfrec.data import pipeline
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
  harness.save_arrays(path, {"user_ids": [4, 7], "target_len": [1, 2], "labels": [1, 0],
                             "logits": [0.3, 0.1],
                             "rows": np.array([0]),
                             "scores": np.array([[1.0, 2.0, 1.0, 0.0]])})
  with np.load(path) as f:
    assert f["ranks"].tolist() == [2]  # 2.0 above and the tie at 1.0 count against it
    assert f["target_len"].tolist() == [1, 2] and f["user_ids"].tolist() == [4, 7]


def test_semi_plan_shares_runs_and_puts_wo_ccl_at_zero():
  exp = semi.experiments(semi.SCALES["cpu"])
  semi_w = dict((r.name, r) for _, r in exp.table1)["SEMI w. CCL"]
  assert dict(exp.fig3)[0].name == "SEMI w/o CCL" and dict(exp.fig4)[0].name == "SEMI w/o CCL"
  assert dict(exp.fig3)[semi.SCALES["cpu"].default_k] is semi_w
  assert dict(exp.fig4)[semi.SCALES["cpu"].default_mlen] is semi_w
  rows = exp.rows(["table1", "table2", "fig3", "fig4"])
  assert len({r.name for r in rows}) == len(rows)  # every run once
  # 11 (table 1, the paper's order) + 5 more (table 2) + 4 other K + 3 other MLEN
  assert [r.name for _, r in exp.table1] == ["DIN", "DIEN", "BST", "YouTubeNet", "BERT4SessRec",
                                             "THACIL", "CoNet", "π-Net", "MiNet", "Cross-BST",
                                             "SEMI w. CCL"]
  assert len(rows) == 11 + 5 + 4 + 3
  assert len(exp.rows(["diag"])) == 8 and len(exp.rows(["table2", "diag"])) == 6 + 5
  pretrain = {r.pretrain.name for r in rows if r.pretrain}
  assert pretrain == {"CCL K=512 MLEN=10", "CCL K=128 MLEN=10", "CCL K=256 MLEN=10",
                      "CCL K=1024 MLEN=10", "CCL K=2048 MLEN=10", "CCL K=512 MLEN=1",
                      "CCL K=512 MLEN=5", "CCL K=512 MLEN=20", "BERT4SessRec pre-training"}
  # The paper's inputs (issue 15 item 2) on every row and pre-training (A.2: the baselines'
  # inputs are SEMI's), the learnt-item setup only in the diagnostic rows.
  for r in rows + exp.rows(["diag"]):
    learnt = "learnt items" in r.name or r.name == "THACIL"  # THACIL: its own x = [f; c]
    assert (semi.PAPER_INPUTS[0] in r.flags) == (not learnt), r.name
    if r.pretrain:
      assert (semi.PAPER_INPUTS[0] in r.pretrain.flags) == (not learnt), r.name
  normalised = [r for r in exp.rows(["diag"]) if r.pretrain and "normalised" in r.name]
  assert {r.pretrain.name for r in normalised} == {"CCL K=512 MLEN=10 normalised"}
  assert all("--model_args=normalize=true" in r.pretrain.flags for r in normalised)
  for r in rows:
    for f in (r.flagfile,) + ((r.pretrain.flagfile,) if r.pretrain else ()):
      assert os.path.exists(os.path.join(REPO, f)), f


def test_cpu_scale_pretrains_on_the_generators_week_pairs_and_real_data_on_its_records(
    syn_dir, tmp_path):
  """Issue 15 item 3: the cpu world is the `semi` preset with 50,000 CCL-only users, whose
  pairs (not the ranking records) are the synthetic pre-training set; MovieLens selects from its
  ranking records."""
  import shutil
  cpu = semi.SCALES["cpu"]
  world = semi.world_config(cpu)
  assert (world.name, world.ccl_only_users, world.ccl_pair_scope) == ("semi", 50_000, "week")
  assert semi.world_config(cpu, target_taste_weight=2.0).ccl_only_users == 50_000  # a sweep
  for dataset, kind in (("synthetic", "ccl_pair"), ("movielens", "ranking")):
    data = str(tmp_path / dataset)
    shutil.copytree(syn_dir, data)
    (_, mlen1), = [(m, r) for m, r in semi.experiments(cpu, dataset).fig4 if m == 1]
    mlen1.pretrain.prepare(data)
    with open(os.path.join(data, "ccl_pair", "pretrain_mlen1.selection.json")) as f:
      assert json.load(f)["from_kind"] == kind, dataset


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_every_row_validates_on_valid_with_early_stopping(scale, syn_dir):
  sc = semi.SCALES[scale]
  exp = semi.experiments(sc)
  runner = harness.Runner(harness.Settings(data_dir=syn_dir, work_dir="unused",
                                           scale_flagfile=os.path.join(REPO, sc.scale_flagfile)))
  for row in exp.rows(["table1", "table2", "fig3", "fig4", "diag"]):
    flagfile = os.path.join(REPO, row.flagfile)
    cfg = harness.parse_config(runner._argv(0, flagfile, row.flags, runner.s.scale_flagfile,
                                            "x"))
    assert harness.validates(cfg) and cfg.data.valid_split == "valid", row.name
    assert cfg.train.early_stopping_patience == 2 and cfg.train.epochs >= 8, row.name
    if scale == "cpu":
      assert cfg.model.kwargs["dim"] == 32, row.name
    if semi.PAPER_INPUTS[0] in row.flags:  # after the scale's overlay, merged per name
      assert cfg.model.kwargs["item_features"] == ["pre_extracted"], row.name
      assert cfg.model.kwargs["dim"] == sc.dim, row.name
      if cfg.model.name.startswith("semi"):
        assert cfg.model.kwargs["attention_dropout"] == 0.0, row.name
        assert cfg.model.kwargs["dropout"] == 0.1, row.name
    if row.pretrain:
      p = row.pretrain
      overlay = os.path.join(REPO, sc.pretrain_flagfile) if sc.pretrain_flagfile else ""
      pcfg = harness.parse_config(runner._argv(0, os.path.join(REPO, p.flagfile), p.flags,
                                               overlay, "x"))
      if row.name == "BERT4SessRec":  # masked-item pre-training, the row's encoder sizes
        assert pcfg.model.name == "bert4sessrec_pretrain" and harness.validates(pcfg)
        assert pcfg.data.valid_split == "valid" and cfg.train.init_layers
        if scale == "cpu":
          assert pcfg.model.kwargs["dim"] == 32 and pcfg.train.epochs == 3
        continue
      assert pcfg.model.name == "ccl" and not harness.validates(pcfg)
      assert pcfg.model.kwargs["queue_size"] == int(p.name.split("K=")[1].split()[0])


def fake(name, seed, auc, hr):
  return {"row": name, "seed": seed, "metrics": {"auc": auc, "hr@3": hr},
          "oracle": {"auc": 0.8, "hr@3": 0.6}, "k": 3, "lr": 0.001,
          "lr_grid": {"0.0003": 0.61, "0.001": 0.65, "0.003": None},
          "best": {"monitor": "val_auc", "mode": "max", "value": 0.65, "epoch": 2 + seed},
          "epochs_run": 4 + seed, "max_epochs": 8, "patience": 2, "valid_split": "valid",
          "eval_seed": 0}


def test_results_file_from_known_numbers(tmp_path):
  exp = semi.experiments(semi.SCALES["cpu"])
  base = {"DIN": 0.60, "BST": 0.62, "YouTubeNet": 0.58, "Cross-BST": 0.64, "DIEN": 0.605,
          "BERT4SessRec": 0.615, "THACIL": 0.59, "CoNet": 0.57, "π-Net": 0.625, "MiNet": 0.63,
          "SEMI-Product w/o CCL": 0.55, "SEMI-Micro-Video w/o CCL": 0.61, "SEMI w/o CCL": 0.66,
          "SEMI-Product w. CCL": 0.54, "SEMI-Micro-Video w. CCL": 0.60, "SEMI w. CCL": 0.67}
  for k in (128, 256, 1024, 2048):
    base[f"SEMI w. CCL (K={k})"] = 0.665
  for m in (1, 5, 20):
    base[f"SEMI w. CCL (MLEN={m})"] = 0.662

  for name in ("SEMI w. CCL (normalised q, k)", "SEMI-Product w. CCL (normalised q, k)",
               "SEMI w/o CCL (learnt items)", "SEMI w. CCL (learnt items)",
               "SEMI w. CCL (learnt items, attention blocks only)"):
    base[name] = 0.5

  results = {}
  for name, auc in base.items():
    results[name] = [fake(name, s, auc + 0.001 * s, auc - 0.2 + 0.001 * s) for s in range(3)]
  # SEMI w/o CCL vs Cross-BST: the right sign with a large spread (AUC 0.66 +- 0.05 vs 0.64
  # +- 0.001): "same direction, not significant".
  for s, d in enumerate((-0.05, 0.0, 0.05)):
    results["SEMI w/o CCL"][s]["metrics"]["auc"] = 0.66 + d
  # Fig. 5 arrays: 10 examples of history lengths 0..9 (bins 0-1, 2-5, 6-9), 5 users; the w. CCL
  # model ranks the least active group's examples perfectly, the w/o model inversely.
  lens = np.arange(10)
  labels = np.array([1, 0] * 5)
  inverse = np.where(labels == 1, 0.0, 1.0)
  best_first = np.where(lens < 2, 1.0 - inverse, inverse)

  def arrays(logits):
    return {"user_ids": np.arange(10) // 2, "target_len": lens, "labels": labels,
            "logits": logits, "rows": np.array([0, 2]), "ranks": np.array([0, 5])}
  arr = {"SEMI w/o CCL": [arrays(inverse)] * 3, "SEMI w. CCL": [arrays(best_first)] * 3}
  out = str(tmp_path / "semi_synthetic.md")
  with open(str(tmp_path / "semi_synthetic.notes.md"), "w") as f:
    f.write("Hand-written analysis.")
  semi.write_report(results, exp, semi.SCALES["cpu"], "synthetic", "tiny", out, 60.0,
                    "python -m tfrec.reproduce", {}, arrays=arr)
  text = open(out).read()
  # mean ± std, then the bootstrap CI: n/a for a row without arrays.
  assert "| Cross-Domain | SEMI w. CCL | 0.6710 ± 0.0010 | [" in text
  assert "| Single-Domain | DIN | 0.6010 ± 0.0010 | n/a |" in text
  assert "(baseline)" in text  # Cross-BST is the best baseline on both metrics
  assert "Oracle ceiling** (the generator's planted P(click)): AUC 0.8000" in text
  assert "**Seeds:** 3 per row" in text and "{0.0003, 0.001, 0.003}" in text
  # Verdicts: significant, the right sign without significance, the wrong sign.
  assert "| SEMI w. CCL > SEMI w/o CCL (AUC) |" in text
  # Cross-BST 0.64 + 0.001 s vs BST 0.62 + 0.001 s: t = 0.02 / sqrt(2e-6 / 3) = 24.5 at
  # df = 4, one-sided p = 8.2e-6.
  assert "| Cross-BST > BST (target only) (AUC) | 0.6410 vs 0.6210 (+3.22%) | +0.0200 n/a | " \
      "8.24e-06** | holds |" in text

  def claim(start):
    return next(x for x in text.splitlines() if x.startswith("| " + start))
  # 0.66 +- 0.05 vs 0.641 +- 0.001: the paper's sign, p = 0.29.
  assert claim("SEMI w/o CCL > Cross-BST (AUC)").endswith(
      "| 0.289 | same direction, not significant |")
  assert claim("SEMI-Product w. CCL > SEMI-Product w/o CCL (HR@3)").endswith(
      "| does not hold |")
  assert claim("SEMI-Micro-Video > SEMI-Product (w/o CCL) (AUC)").endswith("| holds |")
  # A difference both rows have arrays for gets its paired bootstrap CI.
  assert "+0.0110 [" in claim("SEMI w. CCL > SEMI w/o CCL (AUC)")
  assert "| AUC | 0-1 | 2 | 0.0000 | 1.0000 |" in text  # Fig. 5's least active group
  assert "(0-1, 2-5, 6-9 events;" in text  # the absolute bins, the last one to the longest
  assert semi.absolute_edges(np.array([0, 3, 40])) == [1, 5, 10, 20, 40]
  assert semi.absolute_edges(np.array([0, 5])) == [1, 5]
  assert "largest CCL AUC gain in the least active group (0-1 target events;" in text
  assert "0-1: +1.0000" in text
  assert "| the same for SEMI-Product | SEMI-Product w. CCL (normalised q, k) | 0.5010" in text
  # Model selection: the grid's validation AUCs, the choice, each seed's epochs.
  assert "## Model selection (on the valid split)" in text
  assert "| DIN | 0.6100 | 0.6500 | diverged | 0.001 | 2, 3, 4 | 4/8, 5/8, 6/8 |" in text
  assert "Hand-written analysis." in text
  for fig in ("fig3_auc", "fig3_hr3", "fig4_auc", "fig4_hr3", "fig5_auc", "fig5_hr3"):
    path = tmp_path / f"semi_synthetic_{fig}.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig
    assert f"semi_synthetic_{fig}.png" in text


# ------------------------------------------------------------------ caching


def _fake_train_and_evaluate(monkeypatch, calls):
  """train.train and Runner._evaluate replaced by fakes that record their run directories.

  The fake's best validation AUC grows with the learning rate for YouTubeNet and falls with it
  for SEMI, so the grid picks 3e-3 and 1e-3."""

  def train(cfg, *args, **kwargs):
    calls.append(("train", cfg.train.run_dir))
    cfg.save()
    final = config_lib.run_paths(cfg.train.run_dir)["final"]
    os.makedirs(os.path.dirname(final), exist_ok=True)
    open(final + ".index", "w").close()
    sign = 1 if cfg.model.name == "youtubenet" else -1
    value = 0.6 + sign * 10 * cfg.train.learning_rate
    return types.SimpleNamespace(history={"val_auc": [value - 0.01, value, value - 0.02]},
                                 best={"monitor": "val_auc", "mode": "max", "value": value,
                                       "epoch": 2})

  def evaluate(self, run_dir, kind="ranking"):
    calls.append(("eval", run_dir))
    harness.save_arrays(os.path.join(run_dir, harness.ARRAYS_FILE),
                        {"user_ids": [0, 1], "target_len": [1, 2], "labels": [1, 0],
                         "logits": [0.3, 0.1], "rows": np.array([0]),
                         "scores": np.array([[1.0, 0.0]])})
    return {"metrics": {"auc": 1.0, "hr@3": 1.0}, "oracle": {}, "counts": {"examples": 2},
            "protocol": {"ks": [3]}, "checkpoint": {"which": "best"}}

  monkeypatch.setattr(harness.train_lib, "train", train)
  monkeypatch.setattr(harness.Runner, "_evaluate", evaluate)


def test_a_changed_flag_reruns_exactly_the_runs_it_changes(syn_dir, tmp_path, monkeypatch):
  calls = []
  _fake_train_and_evaluate(monkeypatch, calls)
  pre_flags = tmp_path / "pre.flags"
  pre_flags.write_text("--model_args=dim=8,queue_size=32\n")
  ccl = harness.Pretrain("CCL tiny", os.path.join(REPO, semi.CCL_FLAGS),
                         ("--train_split=train",))
  youtubenet = harness.Row("YouTubeNet", os.path.join(REPO, "configs/baselines/youtubenet.flags"))
  semi_w = harness.Row("SEMI w. CCL", os.path.join(REPO, semi.SEMI_FLAGS), pretrain=ccl)
  settings = harness.Settings(data_dir=syn_dir, work_dir=str(tmp_path / "work"), seeds=2,
                              pretrain_flagfile=str(pre_flags), lr_grid=(1e-3, 3e-3))

  def run(rows, **changes):
    calls.clear()
    runner = harness.Runner(dataclasses.replace(settings, **changes))
    results = runner.run_all(rows)
    trained = sorted(os.path.relpath(d, settings.work_dir) for what, d in calls
                     if what == "train")
    evaluated = sorted(os.path.relpath(d, settings.work_dir) for what, d in calls
                       if what == "eval")
    return results, trained, evaluated

  results, trained, evaluated = run([youtubenet, semi_w])
  assert trained == ["pretrain/ccl_tiny/seed0", "pretrain/ccl_tiny/seed1",
                     "semi_w_ccl/lr0.001/seed0", "semi_w_ccl/lr0.001/seed1",
                     "semi_w_ccl/lr0.003/seed0",
                     "youtubenet/lr0.001/seed0", "youtubenet/lr0.003/seed0",
                     "youtubenet/lr0.003/seed1"]
  assert evaluated == ["semi_w_ccl/lr0.001/seed0", "semi_w_ccl/lr0.001/seed1",
                       "youtubenet/lr0.003/seed0", "youtubenet/lr0.003/seed1"]
  r = results["YouTubeNet"][1]
  assert r["lr"] == 3e-3 and r["lr_grid"] == {"0.001": pytest.approx(0.61),
                                              "0.003": pytest.approx(0.63)}
  assert r["best"]["epoch"] == 2 and r["epochs_run"] == 3 and r["valid_split"] == "valid"
  key_file = os.path.join(settings.work_dir, "youtubenet/lr0.003/seed1", harness.TRAIN_FILE)
  assert json.load(open(key_file))["key"] == r["train_key"] and len(r["key"]) == 64

  # Unchanged: everything reused.
  again, trained, evaluated = run([youtubenet, semi_w])
  assert trained == evaluated == [] and again == results

  # One flag of one row: that row's runs (its grid included) train again, from scratch; the
  # other row and the pre-training are reused.
  marker = os.path.join(settings.work_dir, "youtubenet/lr0.003/seed0", "stale")
  open(marker, "w").close()
  changed = harness.Row(youtubenet.name, youtubenet.flagfile, ("--model_args=dropout=0.2",))
  _, trained, evaluated = run([changed, semi_w])
  assert trained == ["youtubenet/lr0.001/seed0", "youtubenet/lr0.003/seed0",
                     "youtubenet/lr0.003/seed1"]
  assert evaluated == ["youtubenet/lr0.003/seed0", "youtubenet/lr0.003/seed1"]
  assert not os.path.exists(marker)

  # An evaluation setting: every run evaluated again, nothing trained.
  _, trained, evaluated = run([changed, semi_w], max_eval_examples=7)
  assert trained == [] and len(evaluated) == 4

  # The pre-training's flags: it and the rows initialised from it train again.
  pre_flags.write_text("--model_args=dim=8,queue_size=64\n")
  _, trained, _ = run([changed, semi_w], max_eval_examples=7)
  assert trained == ["pretrain/ccl_tiny/seed0", "pretrain/ccl_tiny/seed1",
                     "semi_w_ccl/lr0.001/seed0", "semi_w_ccl/lr0.001/seed1",
                     "semi_w_ccl/lr0.003/seed0"]


def test_workers_share_the_runs_and_train_each_once(syn_dir, tmp_path, monkeypatch):
  """Two workers on one work directory (threads here; processes with --workers): every run is
  trained and evaluated exactly once, each worker trains its share, and the collecting worker
  ends with the same results as a single process reading the cache."""
  import threading
  import time as time_lib
  calls = []
  _fake_train_and_evaluate(monkeypatch, calls)
  fake_train = harness.train_lib.train

  started = {"worker0": threading.Event(), "worker1": threading.Event()}

  def slow_train(cfg, *args, **kwargs):
    # A worker's first run waits (up to 60 s) until the other worker holds a run too, so a
    # loaded machine that starts one thread late cannot let the other train everything.
    name = threading.current_thread().name
    other = "worker1" if name == "worker0" else "worker0"
    first = not started[name].is_set()
    started[name].set()
    if first:
      started[other].wait(timeout=60)
    time_lib.sleep(0.05)
    calls.append(("by", name, cfg.train.run_dir))
    return fake_train(cfg, *args, **kwargs)

  monkeypatch.setattr(harness.train_lib, "train", slow_train)
  monkeypatch.setattr(harness.Runner, "POLL_SECONDS", 0.05)
  rows = [harness.Row(n, os.path.join(REPO, "configs/baselines/youtubenet.flags"),
                      (f"--model_args=dropout={d}",)) for n, d in (("A", 0.0), ("B", 0.1))]
  settings = harness.Settings(data_dir=syn_dir, work_dir=str(tmp_path / "work"), seeds=2,
                              lr_grid=(1e-3, 3e-3))
  helper = threading.Thread(name="worker1", target=lambda: harness.Runner(
      settings, worker=(1, 2)).run_all(rows, own_only=True))
  helper.start()
  main_name, threading.current_thread().name = threading.current_thread().name, "worker0"
  try:
    out = harness.Runner(settings, worker=(0, 2)).run_all(rows)
  finally:
    threading.current_thread().name = main_name
  helper.join()
  trained = [d for what, *rest in calls if what == "train" for d in rest]
  evaluated = [d for what, *rest in calls if what == "eval" for d in rest]
  # 2 rows x 2 rates at seed 0, then seed 1 at each row's rate: 6 runs, each once.
  assert len(trained) == len(set(trained)) == 6
  assert len(evaluated) == len(set(evaluated)) == 4
  by = {name for what, name, *_ in calls if what == "by"}
  assert by == {"worker0", "worker1"}
  calls.clear()
  alone = harness.Runner(settings).run_all(rows)
  assert alone == out and not [c for c in calls if c[0] in ("train", "eval")]
  with pytest.raises(ValueError, match="worker index 2 outside 0..1"):
    harness.Runner(settings, worker=(2, 2))


def test_train_key_covers_the_resolved_config_and_the_data(syn_dir, tmp_path):
  flagfile = os.path.join(REPO, "configs/baselines/youtubenet.flags")
  base = [f"--flagfile={flagfile}", f"--data_dir={syn_dir}", "--seed=0"]
  key = harness.train_key(harness.parse_config(base + ["--run_dir=a", "--verbose=0"]))
  # Where it runs, how it talks and where it exports do not change the result.
  assert key == harness.train_key(harness.parse_config(
      base + ["--run_dir=b", "--verbose=2", "--export_dir=x"]))
  for flag in ("--seed=1", "--learning_rate=0.01", "--model_args=dim=16", "--epochs=3",
               "--valid_split=other", "--max_seq_len=20", "--clip_norm=5"):
    assert harness.train_key(harness.parse_config(base + ["--run_dir=a", flag])) != key, flag
  # A field added later is left out of the key at its default: earlier cached keys stay valid.
  material = harness.key_material(harness.parse_config(base + ["--run_dir=a"]))
  assert "clip_norm" not in material["config"]["train"]
  assert harness.key_material(harness.parse_config(base + ["--run_dir=a", "--clip_norm=5"]))[
      "config"]["train"]["clip_norm"] == 5.0
  # The data: a regenerated dataset at the same path is another dataset.
  copy = tmp_path / "copy"
  shutil.copytree(syn_dir, copy)
  moved = [f"--flagfile={flagfile}", f"--data_dir={copy}", "--seed=0", "--run_dir=a"]
  fingerprint = harness.key_material(harness.parse_config(moved))["data"]
  # Where the raw files lay (dataset.json's extra.raw, an absolute path) is provenance, not
  # data: the same conversion from another directory or mirror keeps the key ...
  info_path = copy / "dataset.json"
  info = json.loads(info_path.read_text())
  info.setdefault("extra", {})["raw"] = {"format": "atomic", "path": "/elsewhere/raw"}
  info_path.write_text(json.dumps(info))
  assert harness.key_material(harness.parse_config(moved))["data"] == fingerprint
  # ... while anything else the conversion recorded is part of it,
  info["extra"]["conversion_setting"] = 1
  info_path.write_text(json.dumps(info))
  assert harness.key_material(harness.parse_config(moved))["data"] != fingerprint
  del info["extra"]["conversion_setting"]
  info_path.write_text(json.dumps(info))
  assert harness.key_material(harness.parse_config(moved))["data"] == fingerprint
  # and so are the records (a split's manifest: shard sizes and digests).
  manifest = copy / "ranking" / "train.manifest.json"
  manifest.write_text(manifest.read_text().replace("}", " }", 1))
  assert harness.key_material(harness.parse_config(moved))["data"] != fingerprint
  # Initialised runs are keyed by the pre-training run's key, not its path.
  init = base + ["--run_dir=a", "--init_from=/some/where"]
  with pytest.raises(ValueError, match="without the pre-training run's key"):
    harness.train_key(harness.parse_config(init))
  assert harness.train_key(harness.parse_config(init), "k1") != harness.train_key(
      harness.parse_config(init), "k2")


# ------------------------------------------------------------------ end to end


def _tiny_flags(tmp_path):
  flags_dir = tmp_path / "flags"
  flags_dir.mkdir()
  scale = flags_dir / "scale.flags"
  scale.write_text("--model_args=dim=8,num_heads=2,ff_dim=8,mlp_units=[8]\n--batch_size=64\n"
                   "--epochs=2\n--steps_per_epoch=3\n--max_seq_len=10\n--valid_split=valid\n"
                   "--early_stopping_patience=1\n--backup_every_steps=0\n")
  pre = flags_dir / "pre.flags"
  pre.write_text("--model_args=dim=8,num_heads=2,ff_dim=8,queue_size=32\n--batch_size=16\n"
                 "--epochs=1\n--steps_per_epoch=3\n--max_seq_len=10\n--backup_every_steps=0\n")
  return str(scale), str(pre)


def _record_readers(monkeypatch):
  """Every Reader opened, as (what the harness was doing: "train" inside train.train, else
  "other", kind, split)."""
  opened, phase = [], ["other"]
  init = pipeline.Reader.__init__

  def recording_init(self, directory, kind, split, *args, **kwargs):
    opened.append((phase[0], kind, split))
    init(self, directory, kind, split, *args, **kwargs)

  train = harness.train_lib.train

  def training(*args, **kwargs):
    phase[0] = "train"
    try:
      return train(*args, **kwargs)
    finally:
      phase[0] = "other"

  monkeypatch.setattr(pipeline.Reader, "__init__", recording_init)
  monkeypatch.setattr(harness.train_lib, "train", training)
  return opened


def _check_no_test_shard_while_training(opened, kinds):
  during = {(kind, split) for what, kind, split in opened if what == "train"}
  assert ("ranking", "valid") in during and {k for k, _ in during} == set(kinds), during
  assert not [s for _, s in during if s.startswith("test")], during
  assert ("other", "ranking", "test") in opened  # the evaluation, after training


def test_a_row_never_opens_a_test_shard_while_it_trains(syn_dir, tmp_path, monkeypatch):
  # The run trains on train and validates on valid; only the evaluation opens test. (The
  # grid's choice among several rates: test_a_changed_flag_reruns_exactly_the_runs_it_changes.)
  scale, _ = _tiny_flags(tmp_path)
  opened = _record_readers(monkeypatch)
  row = harness.Row("YouTubeNet", os.path.join(REPO, "configs/baselines/youtubenet.flags"))
  settings = harness.Settings(data_dir=syn_dir, work_dir=str(tmp_path / "work"), seeds=1,
                              scale_flagfile=scale, protocol="couple", lr_grid=(3e-3,))
  (r,) = harness.Runner(settings).run_all([row])[row.name]
  _check_no_test_shard_while_training(opened, ["ranking"])
  # The grid's record is the run's own best validation AUC and its epoch.
  assert r["lr"] == 3e-3 and set(r["lr_grid"]) == {"0.003"}
  assert r["best"]["monitor"] == "val_auc" and r["best"]["epoch"] in (1, 2)
  assert r["best"]["value"] == r["lr_grid"]["0.003"]
  assert r["valid_split"] == "valid" and r["max_epochs"] == 2 and r["patience"] == 1


@pytest.mark.slow
def test_tiny_pretrained_row_trains_evaluates_and_caches(syn_dir, tmp_path, monkeypatch):
  scale, pre = _tiny_flags(tmp_path)
  opened = _record_readers(monkeypatch)
  ccl = harness.Pretrain("CCL tiny", os.path.join(REPO, semi.CCL_FLAGS),
                         ("--train_split=train",))
  row = harness.Row("SEMI w. CCL", os.path.join(REPO, semi.SEMI_FLAGS), pretrain=ccl)
  settings = harness.Settings(data_dir=syn_dir, work_dir=str(tmp_path / "work"), seeds=1,
                              scale_flagfile=scale, pretrain_flagfile=pre,
                              protocol="couple", lr_grid=(1e-3,))
  runner = harness.Runner(settings)
  (r,) = runner.run_all([row])[row.name]
  _check_no_test_shard_while_training(opened, ["ranking", "ccl_pair"])
  assert 0.0 <= r["metrics"]["auc"] <= 1.0 and r["k"] == 5 and r["checkpoint"] == "best"
  arrays = runner.arrays(row, 0)
  assert len(arrays["user_ids"]) == len(arrays["target_len"]) == r["counts"]["examples"]
  assert len(arrays["ranks"]) == r["counts"]["ranked_positives"]
  cfg = json.load(open(os.path.join(runner.row_dir(row, 0), "config.json")))
  assert cfg["train"]["init_from"] == runner.pretrain_dir(ccl, 0)
  assert cfg["model"]["kwargs"]["dim"] == 8 and cfg["train"]["seed"] == 0
  assert cfg["train"]["learning_rate"] == r["lr"] == 1e-3
  # A second runner finds every run cached: nothing is trained or evaluated again.
  again = harness.Runner(settings)
  same = lambda x: json.dumps(x, sort_keys=True)  # noqa: E731  (NaN != NaN as floats)
  assert same(again.run_all([row])) == same({row.name: [r]}) and again.timings == {}


def test_report_command_names_a_variants_own_results_and_work_directories():
  """A report made beside the main one (other --extra_flags) names its --results_dir and
  --work_dir, so that re-running its command does not retrain the main report's runs."""
  code = (
      "import sys; from tfrec.reproduce import __main__ as m; m.FLAGS(sys.argv[:1] + "
      "sys.argv[1:]); print(m.report_command(m.PAPERS['couple'], ['table4'], (1e-3,)))")
  args = ["--paper=couple", "--extra_flags=--valid_retrieval=couple:hr@10", "--lr_grid=1e-3",
          "--results_dir=docs/results/v", "--work_dir=runs/v"]
  out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert out.stdout.strip().splitlines()[-1] == (
      "python -m tfrec.reproduce --paper=couple --dataset=synthetic --seeds=5 --scale=cpu "
      "--parts=table4 --extra_flags=--valid_retrieval=couple:hr@10 --lr_grid=1e-3 "
      "--results_dir=docs/results/v --work_dir=runs/v")
  plain = subprocess.run([sys.executable, "-c", code, "--paper=couple", "--lr_grid=1e-3"],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert "--work_dir" not in plain.stdout and "--results_dir" not in plain.stdout


def test_a_claim_is_taken_by_one_holder_at_a_time(tmp_path):
  """`try_run_lock`: a second claim while the first is held gets False (and holds nothing), and
  the run is free again once the first ends; `is_locked` sees the claim."""
  run = str(tmp_path / "row" / "seed0")
  with harness.try_run_lock(run, "claim") as first:
    assert first and harness.is_locked(run, "claim")
    with harness.try_run_lock(run, "claim") as second:
      assert not second
    assert harness.is_locked(run, "claim")  # the refused attempt released nothing
  assert not harness.is_locked(run, "claim")
  with harness.try_run_lock(run, "claim") as again:
    assert again
