"""Tests of MovieLens-1M's sequential view (SASRec's leave-one-out,
`tfrec.datasets.movielens.sequential`) on a tiny hand-made raw file.

Fixture, with min_count = 3 (movies: A = Toy Story, B = Heat, C = Misérables, D = Alien,
E = Casablanca; times T0 + seconds, listed in file order):
  user 1 (row 0)  C@300 A@100 B@200 D@200       -> time order A B D C (B, D tie: file order)
  user 2 (row 1)  A@10 B@20 C@30
  user 3 (row 2)  A@10 B@20 C@30 A@40           (A twice: a re-rating is an interaction)
  user 4 (row 3)  D@10 E@20                     (2 ratings < 3: dropped)
  user 5 (row 4)  D@10 A@20 B@30 C@40
Raw counts: A 5, B 4, C 4, D 3, E 1. One pass ("once", the paper's code): user 4 and E go, D
stays (3 raw ratings), items A B C D = ids 1..4 in raw movie-file order (Toy Story, Heat,
Misérables, Alien). Fixed point: D keeps 2 ratings after user 4 goes, so D goes too (pass 2),
pass 3 changes nothing; items A B C = 1..3.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import tfrec  # noqa: F401
from tfrec.data.errors import DataError
from tfrec.data.info import DatasetInfo
from tfrec.data.validate import validate
from tfrec.datasets.movielens import raw as mr
from tfrec.datasets.movielens import sequential as seq
from test_movielens import T0, write_grouplens

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIES = [(1, "Toy Story (1995)", "Animation|Children's|Comedy"),
          (2, "Heat (1995)", "Action|Crime|Thriller"),
          (3, "Misérables, Les (1995)", "Drama|Musical"),
          (5, "Alien (1979)", "Horror|Sci-Fi"),
          (10, "Casablanca (1942)", "Drama|Romance|War")]
A, B, C, D, E = 1, 2, 3, 5, 10  # MovieIDs
USERS = [(1, "F", 1, 10, "48067"), (2, "M", 56, 16, "70072"), (3, "M", 25, 15, "55117"),
         (4, "F", 45, 7, "K1A0B1"), (5, "M", 18, 3, "90210")]
RATINGS = [(1, C, 5, 300), (1, A, 4, 100), (1, B, 3, 200), (1, D, 1, 200),
           (2, A, 5, 10), (2, B, 4, 20), (2, C, 3, 30),
           (3, A, 2, 10), (3, B, 4, 20), (3, C, 5, 30), (3, A, 3, 40),
           (4, D, 5, 10), (4, E, 4, 20),
           (5, D, 4, 10), (5, A, 4, 20), (5, B, 2, 30), (5, C, 5, 40)]
ONCE = seq.SequentialConfig(min_count=3)
# Expected sequences (item ids, "once": A=1 B=2 C=3 D=4), per user row.
SEQS = {0: [1, 2, 4, 3], 1: [1, 2, 3], 2: [1, 2, 3, 1], 4: [4, 1, 2, 3]}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  return mr.load_raw(write_grouplens(tmp_path_factory.mktemp("gl"), RATINGS, MOVIES, USERS))


def _recs(view, split):
  return {int(r["user_id"]): r for r in seq.records(view, split)}


def test_five_core_rule_by_hand(raw):
  once = seq.prepare(raw, ONCE)
  assert once.rounds == 1 and once.store.num_items == 4
  assert once.names["items"] == ["", "Toy Story (1995)", "Heat (1995)",
                                 "Misérables, Les (1995)", "Alien (1979)"]
  assert once.lengths.tolist() == [4, 3, 4, 0, 4]
  fixed = seq.prepare(raw, seq.SequentialConfig(min_count=3, core="fixed_point"))
  assert fixed.rounds == 3 and fixed.store.num_items == 3
  assert fixed.lengths.tolist() == [3, 3, 4, 0, 3]
  keep, rounds = seq.core_filter(raw.rating_user, raw.rating_movie, raw.num_users,
                                 raw.num_movies, 3, "fixed_point")
  assert rounds == 3 and keep.tolist() == [r[1] in (A, B, C) and r[0] != 4 for r in RATINGS]
  # Single domain: every item is a target item, none cold; categories = primary genres.
  assert once.store.domain[1:].tolist() == [1] * 4 and once.store.cold.sum() == 0
  assert once.store.category[1:].tolist() == [3, 1, 8, 11]  # Animation Action Drama Horror
  with pytest.raises(ValueError, match="core"):
    seq.SequentialConfig(core="twice")


def test_leave_one_out_positives_are_the_last_and_second_last_items(raw):
  view = seq.prepare(raw, ONCE)
  test, valid, train = (_recs(view, s) for s in ("test", "valid", "train"))
  assert sorted(test) == sorted(valid) == [0, 1, 2, 4]
  assert sorted(train) == [0, 2, 4]  # user row 1 has 3 items: no training record
  for u, items in SEQS.items():
    assert test[u]["positive_item_id"] == items[-1]
    assert list(test[u]["seq_item_ids"]) == items[:-1]
    assert valid[u]["positive_item_id"] == items[-2]
    assert list(valid[u]["seq_item_ids"]) == items[:-2]
    if u in train:
      assert train[u]["positive_item_id"] == items[-3]
      assert list(train[u]["seq_item_ids"]) == items[:-3]
  # The tie B@200 / D@200 of user 1 keeps file order (B first): D is valid's positive.
  assert valid[0]["positive_item_id"] == 4 and valid[0]["timestamp"] == T0 + 200


def test_no_history_holds_its_positive_or_anything_later(raw):
  view = seq.prepare(raw, seq.SequentialConfig(min_count=3, max_len=2))
  for split in seq.SPLITS:
    for u, first, pos in seq.positions(view, split):
      lo = view.starts[u]
      assert lo <= first < pos and pos - first <= 2  # newest 2 kept
      rec = _recs(view, split)[u]
      assert list(rec["seq_item_ids"]) == view.item[first:pos].tolist()
      assert np.all(rec["seq_timestamps"] <= rec["timestamp"])
      assert list(rec["seq_item_ids"]) == SEQS[u][first - lo:pos - lo]
      assert rec["positive_item_id"] == SEQS[u][pos - lo]
  assert list(_recs(view, "test")[0]["seq_item_ids"]) == [2, 4]  # A B D cut to B D


def test_written_view_validates(tmp_path, raw):
  info = seq.convert_sequential(raw, str(tmp_path), ONCE, num_shards=2, verbose=False)
  assert DatasetInfo.load(str(tmp_path)) == info
  assert info.max_seq_len == 200 and info.num_items == 4
  report = validate(str(tmp_path))
  assert report.ok, report.render()
  assert report.records == {"item store": 4, "matching/train": 3, "matching/valid": 4,
                            "matching/test": 4}
  assert "SASRec Table II" in open(tmp_path / "stats.md").read()


def test_seen_items_hold_each_records_whole_history(tmp_path, raw):
  from tfrec.data import seen_items
  config = seq.SequentialConfig(min_count=3, max_len=2)  # sequences cut, histories not
  view = seq.prepare(raw, config)
  seq.convert_sequential(raw, str(tmp_path), config, num_shards=2, verbose=False)
  for split, hold_out in (("test", 0), ("valid", 1), ("train", 2)):
    seen = seen_items.load(str(tmp_path), split)
    recs = _recs(view, split)
    assert sorted(seen) == sorted(recs)
    for u, items in seen.items():
      assert items.tolist() == SEQS[u][:len(SEQS[u]) - 1 - hold_out]
  assert seen_items.load(str(tmp_path), "test")[0].tolist() == [1, 2, 4]  # its sequence: [2, 4]


def test_bad_raw_line_names_file_line_and_field(tmp_path):
  bad = RATINGS[:5] + [(2, B, 9, 20)] + RATINGS[6:]
  d = write_grouplens(tmp_path / "bad", bad, MOVIES, USERS)
  with pytest.raises(DataError) as e:
    mr.load_raw(d)
  assert e.value.path.endswith("ratings.dat") and e.value.record == 6
  assert e.value.field == "Rating"


def test_cli_view_sequential(tmp_path):
  src = write_grouplens(tmp_path / "gl", RATINGS, MOVIES, USERS)
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "tfrec.datasets.movielens", f"--out={out}", "--view=sequential",
       "--source=local", f"--local_dir={src}", "--seq_min_count=3", "--seq_max_len=150",
       "--num_shards=1"], capture_output=True, text=True, cwd=REPO, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  info = DatasetInfo.load(str(out))
  assert info.max_seq_len == 150 and info.num_items == 4
  assert info.extra["view"] == "sequential"
  assert sorted(os.listdir(out / "matching")) == [
      "test-00000-of-00001.tfrecord", "test.manifest.json", "train-00000-of-00001.tfrecord",
      "train.manifest.json", "valid-00000-of-00001.tfrecord", "valid.manifest.json"]
