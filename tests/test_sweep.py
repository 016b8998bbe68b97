"""Regime sweeps (tfrec/reproduce/sweep.py): knob parsing, world caching, the verdict per
regime, the report and its regime map, and a tiny sweep end to end."""

import json
import os

import numpy as np
import pytest

from tfrec.reproduce import bootstrap, harness, stats, sweep

from test_reproduce import _tiny_flags  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_types_values_by_the_knob_and_names_the_knobs():
  assert sweep.parse("transfer=0.2, 0.9", "tiny") == ("transfer", [0.2, 0.9])
  assert sweep.parse("num_topics=4,8", "tiny") == ("num_topics", [4, 8])
  with pytest.raises(ValueError, match="not a knob of the synthetic world; knobs: .*transfer"):
    sweep.parse("transfr=0.2", "tiny")
  with pytest.raises(ValueError, match="num_topics=x.*num_topics takes a value of type int"):
    sweep.parse("num_topics=x", "tiny")
  with pytest.raises(ValueError, match="expected FIELD=v1,v2"):
    sweep.parse("transfer", "tiny")
  with pytest.raises(ValueError, match="repeated values"):
    sweep.parse("transfer=0.2,0.2", "tiny")


def _point(value, words, p=0.01):
  return sweep.Point(value, 0.7, 0.6, bootstrap.Interval(0.1, 0.05, 0.15), p, words)


def test_regimes_say_where_the_claim_holds():
  same = [_point(0.1, stats.HOLDS), _point(0.9, stats.HOLDS)]
  assert sweep.regimes(same) == ("The claim holds at 0.1, 0.9: the same verdict in every "
                                 "regime swept.")
  mixed = [_point(0.1, stats.DOES_NOT_HOLD, 0.8), _point(0.5, stats.NOT_SIGNIFICANT, 0.2),
           _point(0.9, stats.HOLDS)]
  assert sweep.regimes(mixed) == (
      "The verdict depends on the regime: holds at 0.9; same direction, not significant at "
      "0.5; does not hold at 0.1.")


def test_report_has_a_row_per_value_and_a_regime_map(tmp_path):
  points = {("A > B", "auc"): [_point(0.1, stats.DOES_NOT_HOLD, 0.7),
                               _point(0.9, stats.HOLDS, 0.001)]}
  path = sweep.write_report(str(tmp_path / "semi_synthetic_sweep_transfer.md"), "semi",
                            "transfer", [0.1, 0.9], "tiny", 3, points, ["auc"])
  text = open(path).read()
  assert "| 0.1 | 0.7000 | 0.6000 | +0.1000 [0.0500, 0.1500] | 0.7 | does not hold |" in text
  assert "| 0.9 |" in text and "holds at 0.9" in text
  png = tmp_path / "semi_synthetic_sweep_transfer_a_b_auc.png"
  assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert f"]({png.name})" in text


def test_claims_are_the_papers_by_text():
  paper = (("X > Y", "X", "Y"), ("Y > Z", "Y", "Z"))
  assert [c.text for c in sweep.chosen_claims(paper, [])] == ["X > Y", "Y > Z"]
  assert sweep.chosen_claims(paper, ["Y > Z"]) == [sweep.Claim("Y > Z", "Y", "Z")]
  with pytest.raises(ValueError, match=r"unknown \['W > Z'\]; the paper's claims: X > Y; Y > Z"):
    sweep.chosen_claims(paper, ["W > Z"])


@pytest.mark.slow  # about a minute: two worlds, four runs (measure: test_reproduce_couple)
def test_a_tiny_sweep_regenerates_the_world_per_value_and_measures_the_claim(tmp_path):
  scale, _ = _tiny_flags(tmp_path)
  rows = [harness.Row("YouTubeNet", os.path.join(REPO, "configs/baselines/youtubenet.flags")),
          harness.Row("DIN", os.path.join(REPO, "configs/baselines/din.flags"))]
  claim = sweep.Claim("YouTubeNet > DIN", "YouTubeNet", "DIN")
  settings = harness.Settings(data_dir="", work_dir=str(tmp_path / "work"), seeds=1,
                              scale_flagfile=scale, protocol="couple", lr_grid=(3e-3,))
  data = str(tmp_path / "data")
  points = sweep.run_sweep("transfer", [0.1, 0.9], [claim], rows, "tiny", data, settings,
                           ["auc"], overrides={"num_users": 60})  # small worlds: a fast test
  (pts,) = points.values()
  assert [p.value for p in pts] == [0.1, 0.9]
  for p in pts:
    assert 0 < p.mean_a < 1 and 0 < p.mean_b < 1
    assert p.difference.estimate == pytest.approx(p.mean_a - p.mean_b, abs=1e-9)
    assert np.isnan(p.p) or 0 <= p.p <= 1  # one seed: no Welch test
  held = {}
  for v in (0.1, 0.9):
    d = sweep.world_dir(data, "tiny", "transfer", v)
    held[v] = json.load(open(os.path.join(d, "dataset.json")))["extra"]["config"]["transfer"]
    assert os.path.isdir(os.path.join(str(tmp_path / "work"), f"transfer={v}"))
  assert held == {0.1: 0.1, 0.9: 0.9}
  # A world of the right configuration is reused, not regenerated.
  d = sweep.world_dir(data, "tiny", "transfer", 0.1)
  stamp = os.path.getmtime(os.path.join(d, "dataset.json"))
  sweep.ensure_world(d, "tiny", "transfer", 0.1, {"num_users": 60})
  assert os.path.getmtime(os.path.join(d, "dataset.json")) == stamp


def test_same_world_fills_fields_an_older_dataset_json_lacks():
  from tfrec.datasets import synthetic
  config = synthetic.get_config("tiny", transfer=0.1)
  held = json.loads(json.dumps(config.to_dict()))
  assert sweep._same_world(held, config)
  older = dict(held)
  del older["cold_user_share"]  # a knob added after this world was written: default 0.0.
  assert sweep._same_world(older, config)
  assert not sweep._same_world(older, synthetic.get_config("tiny", transfer=0.1,
                                                           cold_user_share=0.2))
  assert not sweep._same_world({**held, "transfer": 0.9}, config)
  assert not sweep._same_world({**held, "no_such_knob": 1}, config)
  assert not sweep._same_world(None, config)


def test_sweep_workers_share_each_worlds_runs_and_helpers_report_nothing(tmp_path, monkeypatch):
  made, runners = [], []

  class FakeRunner:
    def __init__(self, settings, worker=(0, 1)):
      self.settings, self.worker = settings, worker
      runners.append(self)

    def run_all(self, rows, own_only=False):
      self.own_only = own_only
      return {} if own_only else {r.name: [] for r in rows}

    def arrays(self, row, seed):
      return {}

  monkeypatch.setattr(sweep.harness, "Runner", FakeRunner)
  monkeypatch.setattr(sweep, "ensure_world", lambda d, *a, **k: made.append(d) or d)
  monkeypatch.setattr(sweep, "measure", lambda *a: "point")
  settings = harness.Settings(data_dir="", work_dir=str(tmp_path / "runs"), seeds=1)
  claims = [sweep.Claim("A > B", "A", "B")]
  rows = [harness.Row("A", "a.flags"), harness.Row("B", "b.flags")]
  out = sweep.run_sweep("transfer", [0.1, 0.7], claims, rows, "tiny", str(tmp_path),
                        settings, ["auc"], worker=(1, 2))
  assert out == {} and [r.worker for r in runners] == [(1, 2), (1, 2)]
  assert all(r.own_only for r in runners) and len(made) == 2  # each world ensured, under a lock
  assert all(os.path.exists(d.rstrip(os.sep) + ".world.lock") for d in made)
  runners.clear()
  out = sweep.run_sweep("transfer", [0.1, 0.7], claims, rows, "tiny", str(tmp_path),
                        settings, ["auc"], worker=(0, 2))
  assert out == {("A > B", "auc"): ["point", "point"]}
  assert [r.worker for r in runners] == [(0, 2), (0, 2)] and not runners[0].own_only


def test_report_names_the_monitor_and_each_worlds_stopping_epochs(tmp_path):
  points = {("A > B", "hr@10"): [_point(0.1, stats.HOLDS)]}
  rows = [harness.Row("A", "a.flags"), harness.Row("B", "b.flags")]

  def run(epoch, lr=1e-3):
    return {"best": {"epoch": epoch, "monitor": "val_hr@10", "value": 0.5}, "lr": lr,
            "lr_grid": {lr: 0.5}, "epochs_run": epoch + 2, "max_epochs": 20}

  results = {"A": [run(3), run(4)], "B": [run(9), run(1)]}
  path = sweep.write_report(str(tmp_path / "couple_synthetic_sweep_tag_overlap.md"), "couple",
                            "tag_overlap", [0.1], "tiny", 2, points, ["hr@10"],
                            command="python -m tfrec.reproduce --extra_flags=--x=1",
                            selection={0.1: (rows, results)})
  text = open(path).read()
  assert "early stopping on HR@10 on the valid split" in text
  assert "`--extra_flags=--x=1`" not in text and "--extra_flags=--x=1`" in text
  assert "## Model selection (on the valid split) at tag_overlap = 0.1" in text
  assert "| B | 0.5000 | 0.001 | 9, 1 | 11/20, 3/20 |" in text
