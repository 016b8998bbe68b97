"""Tests of MovieLens-1M's M5 view (`tfrec.datasets.movielens.m5`) on the fixture of
test_movielens.py, plus three ratings of user 3 (row 3) on later days.

Days (UTC): T0 = 22:00 of day D, so T0 + [0, 7200) is day D, T0 + [7200, 93600) D+1,
[93600, 180000) D+2, [180000, 266400) D+3, [266400, 352800) D+4.
Items (one domain, raw file order): 1 Toy Story, 2 Heat, 3 Misérables, 4 Alien, 5 Grumpier Old
Men, 6 Waiting to Exhale, 7 GoldenEye, 8 Casablanca, 9 Aliens, 10 Star Wars, 11 Star Trek,
12 Shining, 13 Fargo, 14 Hoop Dreams.
Positive days: user 0 D, D+1 (Grumpier at 8000); user 1 D, D+1; user 2 D only; user 3 D,
D+2 (Hoop Dreams), D+3 (Shining), then a 1-star Toy Story on D+4 (not a positive).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfrec  # noqa: F401
from tfrec.data import schema, seen_items
from tfrec.data.info import DatasetInfo
from tfrec.data.validate import validate
from tfrec.datasets import movielens as ml
from tfrec.datasets.movielens import m5
from tfrec.datasets.movielens import raw as mr
from test_movielens import MOVIES, RATINGS, T0, USERS, write_grouplens

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATER = [(4, 30, 5, 100_000), (4, 20, 4, 200_000), (4, 1, 1, 300_000)]
ALL = RATINGS + LATER
ITEM = {m: i for i, (m, _, _) in enumerate(MOVIES, 1)}  # MovieID -> item id
DAY = 86_400


def _day(t):
  return (T0 + t) // DAY


@pytest.fixture(scope="module")
def gl_dir(tmp_path_factory):
  return write_grouplens(tmp_path_factory.mktemp("gl"), ratings=ALL)


@pytest.fixture(scope="module")
def prep(gl_dir):
  return m5.prepare(mr.load_raw(gl_dir))


def _recs(p, split):
  return [{k: np.asarray(v).tolist() for k, v in r.items()}
          for r in ml.records(p, "matching", split)]


def test_kinds_are_genre_groups(prep):
  kinds = prep.store.kind
  n = prep.info.num_item_kinds
  assert n == 5 and prep.names["item_kinds"] == ["", "action", "comedy", "drama", "thriller",
                                                 "family"]
  assert kinds[0] == 0 and 1 <= kinds[1:].min() and kinds[1:].max() <= n
  # By hand: Toy Story (Animation|...) family, Heat (Action|...) action, Alien (Horror|...)
  # thriller, Grumpier (Comedy|...) comedy, Hoop Dreams (Documentary) drama, Fargo (Crime|...)
  # thriller.
  assert [int(kinds[ITEM[m]]) for m in (1, 2, 5, 6, 30, 21)] == [5, 1, 4, 2, 3, 4]
  group = {g: k for k, (_, gs) in enumerate(m5.GENRE_KINDS, 1) for g in gs}
  assert sorted(group) == sorted(mr.GENRES)  # Every genre in exactly one group.
  assert [int(kinds[ITEM[m]]) for m, _, _ in MOVIES] == \
      [group[g.split("|")[0]] for _, _, g in MOVIES]
  extra = prep.info.extra["item_kinds"]
  assert extra["names"] == prep.names["item_kinds"][1:]
  assert extra["genres"]["family"] == ["Animation", "Children's"]
  assert prep.store.domain[1:].tolist() == [schema.TARGET] * 14 and not prep.store.cold.any()


def test_scenario_is_the_zip_region_rule(prep):
  # Zip 48067 -> region 4 -> midwest (2); 70072 -> 7 -> south (1); "K1A0B1" -> 10 -> other (4).
  assert prep.scenario.tolist() == [2, 1, 2, 4]
  region = {u: int(z[0]) if z[0].isdigit() else 10 for u, (_, _, _, _, z) in enumerate(USERS)}
  rule = ml.ConvertConfig().scenario_of_region
  for split in m5.SPLITS:
    for r in _recs(prep, split):
      assert r["scenario_id"] == rule[region[r["user_id"]]]


def test_test_split_is_each_users_last_positive_day(prep):
  pos_days = {u: sorted({_day(t) for uu, _, r, t in ALL if uu - 1 == u and r >= 4})
              for u in range(4)}
  recs = {s: _recs(prep, s) for s in m5.SPLITS}
  for u, days in pos_days.items():
    test_start = days[-1] * DAY
    test = [r for r in recs["test"] if r["user_id"] == u]
    assert test and all(r["timestamp"] // DAY == days[-1] for r in test)
    for s in ("train", "valid"):
      assert all(r["timestamp"] < test_start for r in recs[s] if r["user_id"] == u)
    valid = [r["timestamp"] // DAY for r in recs["valid"] if r["user_id"] == u]
    assert all(d == days[-2] for d in valid)
    assert all(r["timestamp"] // DAY < days[-2] for r in recs["train"] if r["user_id"] == u)
  # User 3: train = day D, valid = Hoop Dreams (D+2), test = Shining (D+3); the later 1-star
  # rating (D+4) moves nothing.
  u3 = {s: [(r["positive_item_id"], r["timestamp"] - T0) for r in recs[s] if r["user_id"] == 3]
        for s in m5.SPLITS}
  assert u3["valid"] == [(14, 100_000)] and u3["test"] == [(12, 200_000)]
  assert [t for _, t in u3["train"]] == [3100, 3200, 3400, 3600, 3700, 3800, 3900]
  # User 2 rated on day D only: test records only, flagged cold; the day's first positive
  # (Casablanca and Aliens at 2000) has no earlier one and no record.
  assert not [r for s in ("train", "valid") for r in recs[s] if r["user_id"] == 2]
  u2 = [r for r in recs["test"] if r["user_id"] == 2]
  assert [r["timestamp"] - T0 for r in u2] == [2100, 2300, 2500, 2700, 2800, 2900]
  assert all(r["cold_user"] == 1 for r in u2) and prep.cold_user.tolist() == [0, 0, 1, 0]
  for s in m5.SPLITS:  # No history holds its positive's time or later.
    assert all(max(r["seq_timestamps"]) < r["timestamp"] for r in recs[s])


def test_subsidiary_columns_by_hand(prep):
  """User 0's test record (Grumpier at 8000): every earlier positive in (time, item id) order,
  each [1 viewing, its stars]."""
  rec = [r for r in _recs(prep, "test") if r["user_id"] == 0]
  assert len(rec) == 1 and rec[0]["positive_item_id"] == ITEM[6]
  stars = {ITEM[m]: r for u, m, r, t in ALL if u == 1}
  # Toy, Heat @100; Shining @400; Casablanca @500; Aliens, Star Wars @700.
  assert rec[0]["seq_item_ids"] == [1, 2, 12, 8, 9, 10]
  assert rec[0]["seq_subsidiary"] == [[1.0, float(stars[i])] for i in rec[0]["seq_item_ids"]]
  assert rec[0]["seq_subsidiary"] == [[1.0, 4.0], [1.0, 5.0], [1.0, 5.0], [1.0, 4.0],
                                      [1.0, 5.0], [1.0, 4.0]]
  assert rec[0]["seq_domain_ids"] == [1] * 6


def test_written_view_validates_with_seen_items(tmp_path, gl_dir, prep):
  info = m5.convert_m5(mr.load_raw(gl_dir), str(tmp_path), num_shards=2, verbose=False)
  report = validate(str(tmp_path))
  assert report.ok, report.render()
  assert report.records == {"item store": 14, "matching/train": 7, "matching/valid": 8,
                            "matching/test": 12}
  assert sorted(os.listdir(tmp_path)) == ["dataset.json", "items.manifest.json", "items.npz",
                                          "matching", "seen_items", "stats.md", "vocab.json"]
  assert DatasetInfo.load(str(tmp_path)) == info and info.num_item_kinds == 5
  assert info.extra["view"] == "m5" and info.extra["config"]["item_kind"] == "genre"
  assert info.extra["splits"] == {"matching": ["train", "valid", "test"]}
  assert json.load(open(tmp_path / "vocab.json"))["item_kinds"][1:] == \
      info.extra["item_kinds"]["names"]
  # seen items: per user with a record, the positives before the split's period.
  test = seen_items.load(str(tmp_path), "test")
  assert sorted(test) == [0, 1, 2, 3] and test[2].tolist() == []
  assert test[0].tolist() == [1, 2, 12, 8, 9, 10] and test[3].tolist()[-1] == 14
  valid = seen_items.load(str(tmp_path), "valid")
  assert sorted(valid) == [0, 1, 3] and valid[3].tolist() == [3, 10, 4, 8, 9, 13, 6, 2]
  assert seen_items.load(str(tmp_path), "train") is None
  stats = (tmp_path / "stats.md").read_text()
  assert "| 1 | 1 | 8 | 0 | 0 | 6 |" in stats  # one-day user 2: 8 positives, 6 test records


def test_default_views_keep_their_options():
  """The options the m5 view sets leave the other views' choices (and dataset.json) as they
  were: decade kinds, the share split, two domains; item_kind is recorded only when set."""
  d = ml.ConvertConfig()
  assert (d.item_kind, d.split, d.cold_share) == ("decade", "share", 0.1)
  assert len(d.target_genres) == 15
  with pytest.raises(ValueError, match="item_kind"):
    ml.ConvertConfig(item_kind="mood")
  with pytest.raises(ValueError, match="one domain"):
    m5.prepare(None, ml.ConvertConfig())


def test_cli_view_m5(tmp_path, gl_dir):
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "tfrec.datasets.movielens", f"--out={out}", "--view=m5",
       "--source=local", f"--local_dir={gl_dir}", "--num_shards=1"],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  info = DatasetInfo.load(str(out))
  assert info.name == "movielens/ml-1m-m5" and info.num_item_kinds == 5
  assert sorted(os.listdir(out / "matching")) == [
      "test-00000-of-00001.tfrecord", "test.manifest.json", "train-00000-of-00001.tfrecord",
      "train.manifest.json", "valid-00000-of-00001.tfrecord", "valid.manifest.json"]
  assert "| matching split |" in proc.stdout
