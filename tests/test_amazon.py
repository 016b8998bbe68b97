"""Amazon reviews converter (`tfrec.datasets.amazon`, COUPLE §4.1: Books -> Movies and TV) on the
hand-written fixture in tests/data/amazon/ (the published layout: ratings_<Category>.csv without a
header, meta_Books.json as 2014 Python literals, meta_Movies_and_TV.json as 2018 JSON).

Fixture (day d = time 1300000000 + 86400 d). Ratings > 3 are positives.
  Books:  U1 BK1@1 BK2@3; U7 BK1@1 (no movie rating: row counted, not kept); U2 BK1@1 BK3@5
          (and BK3 1.0@8); U3 BK2@2 BK4@3; U4 BK4@3; U5 BK5 2.0@1; U6 BK5@9
  Movies: U1 MV1@2 MV2@4 MV3@6 MV4@7; U2 MV1@2 (MV2 2.0@3) MV7@3 (last line of the file)
          MV3@4 MV5@5 MV6@6; U3 MV2@1 (MV4 3.0@2) MV3@3 MV7@4; U4 MV5@2 MV8@2; U5 MV1@1;
          U6 MV3@7 MV4@8
Users with positives in both domains: U1 U2 U3 U4 U6 (U5's book is 2.0) -> ids 0 1 2 3 4.
Items: BK1..BK5 = 1..5, MV1..MV8 = 6..13 (first appearance in each file).
Per user by time (equal days: the Books row first):
  U1: BK1 MV1 BK2 MV2 MV3 MV4        U2: BK1 MV1 MV7 MV3 BK3 MV5 MV6
  U3: MV2 BK2 BK4 MV3 MV7            U4: MV5 MV8 (same day, file order) BK4     U6: MV3 MV4 BK5
Test (last movie): MV4 (U1, U6), MV6, MV7, MV8 -> cold {9, 11, 12, 13}. Valid (last movie not
cold): MV3 (U1, U3, U6), MV5 (U2, U4) -> {8, 10}, erased from train. Warm movies: MV1, MV2.
Train (all users warm): U1 MV1 <- [BK1], U1 MV2 <- [BK1 MV1 BK2], U2 MV1 <- [BK1]; U3 MV2 has
no earlier positive (dropped).
Tags (>= 2 items; ids by frequency): 1 "Movies & TV", 2 Books, 3 Fantasy, 4 "Science Fiction",
5 Horror, 6 "Literature & Fiction", 7 "Science Fiction & Fantasy", 8 "brand:King"; dropped:
brand:Tolkien, brand:Peter Jackson, "Genre for Featured Categories", Documentary (one item each).
"""

import gzip
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tfrec  # noqa: F401
from tfrec.data import schema, seen_items
from tfrec.data.errors import DataError
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.tfrecord_io import Manifest
from tfrec.data.validate import validate
from tfrec.datasets import amazon
from tfrec.datasets import cold_start as cs
from tfrec.datasets.amazon import raw as ar
from tfrec.datasets.movielens.raw import LineError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "data", "amazon")
DAY0 = 1_300_000_000
ALL_WARM = amazon.ConvertConfig(protocol=cs.ColdStartConfig(cold_user_share=0.0))
WARM_TEST = {0: ([1, 6, 2, 7, 8], 9), 1: ([1, 6, 8, 3, 10], 11), 2: ([7, 2, 4, 8], 12),
             3: ([10], 13), 4: ([8], 9)}
COLD_TEST = {0: [1, 2], 1: [1, 3], 2: [2, 4]}  # users 3 and 4: no earlier book (dropped)


def day(d):
  return DAY0 + 86_400 * d


@pytest.fixture(scope="module")
def raw():
  return amazon.load_raw(FIXTURE)


def _records(p, split):
  s, plan = p.split, p.split.plans[split]
  return [(int(s.user[q]), s.item[plan.history(j)].tolist(), int(s.item[q]),
           int(plan.cold_user[j])) for j, q in enumerate(plan.pos)]


def test_raw_files_are_read_as_published(raw):
  src, tgt = raw.ratings
  assert raw.users == ["U1", "U2", "U3", "U4", "U5", "U6"]  # target file order; not U7
  assert (src.lines, len(src), src.other_users, tgt.lines, len(tgt)) == (11, 10, 1, 19, 19)
  assert src.asins == ["BK1", "BK2", "BK3", "BK4", "BK5"]
  assert tgt.asins == [f"MV{i}" for i in range(1, 9)]
  assert src.line[:3].tolist() == [1, 3, 4] and src.rating[:2].tolist() == [5.0, 4.0]
  books, movies = raw.meta
  assert (books.lines, books.skipped, books.duplicates) == (7, 1, 1)
  assert books.items["BK1"] == ar.ItemMeta(
      categories=(("Books", "Literature & Fiction", "Fantasy"),), title="The Hobbit",
      brand="Tolkien")  # the first of its two lines
  assert books.items["BK2"].categories[1] == ("Books", "Literature & Fiction")
  assert movies.items["MV2"].title == "Dune & more"  # HTML-unescaped
  assert movies.items["MV6"] == ar.ItemMeta(categories=(), title="Fargo", brand="")
  assert "MV8" not in movies.items and "MV9" not in movies.items and movies.skipped == 1


def test_records_by_hand(raw):
  p = amazon.prepare(raw, ALL_WARM)
  s = p.split
  assert p.names["users"] == ["U1", "U2", "U3", "U4", "U6"]
  assert p.names["items"] == [""] + [f"BK{i}" for i in range(1, 6)] + [
      f"MV{i}" for i in range(1, 9)]
  assert p.store.domain[1:].tolist() == [0] * 5 + [1] * 8
  assert s.cold_items.tolist() == [9, 11, 12, 13] and s.valid_items.tolist() == [8, 10]
  assert p.store.cold.nonzero()[0].tolist() == [9, 11, 12, 13]
  assert _records(p, "train") == [(0, [1], 6, 0), (0, [1, 6, 2], 7, 0), (1, [1], 6, 0)]
  assert _records(p, "valid") == [(0, [1, 6, 2, 7], 8, 0), (1, [1, 6, 3], 10, 0),
                                  (2, [7, 2, 4], 8, 0)]
  assert _records(p, "test_cold") == [(u, h, pos, 0) for u, (h, pos) in WARM_TEST.items()]
  assert s.dropped["train: warm user, no positive before it once the cold and valid items "
                   "are erased"] == 1
  assert s.dropped["valid: warm user, no positive before it once the cold and valid items "
                   "are erased"] == 2  # U4, U6
  assert list(s.erased.values()) == [1, 1, 0, 0]  # U2's MV7 (cold), U2's MV3 (valid)
  # A hand-checked record: U2's test (user 1): MV7 (cold) erased, MV3 (valid) kept, BK3
  # before MV5 on the same day.
  rec = list(cs.records(s, "test_cold", p.user_features, p.scenario))[1]
  assert int(rec["user_id"]) == 1 and int(rec["positive_item_id"]) == 11
  assert rec["seq_item_ids"].tolist() == [1, 6, 8, 3, 10]
  assert rec["seq_domain_ids"].tolist() == [0, 1, 1, 0, 1]
  assert rec["seq_timestamps"].tolist() == [day(1), day(2), day(4), day(5), day(5)]
  assert int(rec["timestamp"]) == day(6) and int(rec["cold_user"]) == 0
  assert rec["user_features"].tolist() == [0] * 4 and int(rec["scenario_id"]) == 0
  # Seen items: every earlier positive, the erased MV7 (12) included.
  assert dict((u, x.tolist()) for u, x in s.seen("test_cold"))[1] == [1, 6, 12, 8, 3, 10]


def test_item_features_by_hand(raw):
  p = amazon.prepare(raw, ALL_WARM)
  assert p.names["tags"] == ["Movies & TV", "Books", "Fantasy", "Science Fiction", "Horror",
                             "Literature & Fiction", "Science Fiction & Fantasy", "brand:King"]
  tags = {i: [t for t in row if t] for i, row in enumerate(p.store.tags)}
  assert tags[1] == [3, 6, 2]        # BK1: brand:Tolkien dropped; leaf first
  assert tags[2] == [4, 6, 7, 2]     # BK2: the leaves of both paths, then up
  assert tags[3] == [8, 5, 2]        # BK3: brand:King (shared with MV3) first
  assert tags[8] == [8, 5, 1] and tags[9] == [5, 4, 1]
  assert tags[11] == [] and tags[12] == [1] and tags[13] == []  # MV6 no path; MV8 no meta
  assert p.names["categories"] == ["Fantasy", "Horror", "Science Fiction", "(none)",
                                   "Documentary"]
  assert p.store.category[1:].tolist() == [1, 3, 2, 3, 1, 1, 3, 2, 2, 1, 4, 5, 4]
  assert p.names["tokens"][:5] == ["the", "alien", "dune", "hobbit", "shining"]
  assert [t for t in p.store.title[4] if t] == [2, 1, 12]  # "Alien: the novel"
  assert p.dropped["distinct tags carried by fewer than 2 items (dropped)"] == 4
  assert p.dropped["kept target items without a metadata line"] == 1
  assert p.dropped["items with no tag left"] == 2
  assert [k["tags"] for k in p.kept] == [7, 5]
  assert [k["interactions"] for k in p.kept] == [8, 16]
  assert amazon.conversion.item_tags(None) == []


def test_cold_users_half_and_without_target_items(raw):
  p = amazon.prepare(raw)
  s = p.split
  assert s.test_users.tolist() == [0, 1, 2, 3, 4] and len(s.cold_users) == 2  # floor(5 / 2)
  np.testing.assert_array_equal(amazon.prepare(raw).split.cold_users, s.cold_users)
  cold = set(s.cold_users.tolist())
  for user, history, positive, flag in _records(p, "test_cold"):
    assert flag == int(user in cold)
    assert history == (COLD_TEST[user] if flag else WARM_TEST[user][0])
    if flag:
      assert not np.any(p.store.domain[history] == schema.TARGET)
  for user, history, positive, flag in _records(p, "valid"):
    if flag:
      assert history == COLD_TEST[user]
  assert not cold & {u for u, *_ in _records(p, "train")}
  dropped = len(cold & {3, 4})
  assert s.dropped["test_cold: cold user, no source-domain positive before it (target items "
                   "erased)"] == dropped
  assert len(s.plans["test_cold"]) == 5 - dropped


def test_converted_dataset_validates_and_keeps_cold_items_out_of_training(raw, tmp_path):
  out = str(tmp_path / "out")
  info = amazon.convert(raw, out, num_shards=2, verbose=False)
  report = validate(out)  # refuses cold items in train and valid
  assert report.ok, report.render()
  assert DatasetInfo.load(out) == info and info.name == "amazon/Books-Movies_and_TV"
  assert (info.num_users, info.num_items, info.num_tags) == (5, 13, 8)
  store = ItemStore.load(out)
  cold = set(store.item_ids(cold=True).tolist())
  assert cold == {9, 11, 12, 13}
  p = amazon.prepare(raw)
  for split in ("train", "valid"):
    assert Manifest.load(out, "matching", split).num_records == len(p.split.plans[split])
    for _, history, positive, _ in _records(p, split):
      assert positive not in cold and not cold & set(history)
  assert sorted(seen_items.load(out, "test_cold")) == sorted(
      int(p.split.user[q]) for q in p.split.plans["test_cold"].pos)
  assert not os.path.exists(seen_items.path(out, "train"))
  stats = open(os.path.join(out, "stats.md")).read()
  assert "COUPLE Table 3, Amazon (this dataset's row)" in stats
  assert "kept target items without a metadata line: 1" in stats


def test_kcore_and_gzip_and_2018_column_order(raw, tmp_path):
  # 2-core: BK3, BK5, MV6, MV8 have one positive each (pass 1); U6 has then no book (pass 2),
  # so MV4 keeps one positive (U1's, pass 3); pass 4 changes nothing.
  p = amazon.prepare(raw, amazon.ConvertConfig(kcore=2))
  assert p.names["users"] == ["U1", "U2", "U3", "U4"] and p.rounds == 4
  assert p.names["items"] == ["", "BK1", "BK2", "BK4", "MV1", "MV2", "MV3", "MV5", "MV7"]
  d = tmp_path / "raw2018"
  d.mkdir()
  for name in os.listdir(FIXTURE):
    text = open(os.path.join(FIXTURE, name)).read()
    if name.startswith("ratings_"):  # 2018: item,user,rating,timestamp
      text = "".join(",".join([r[1], r[0]] + r[2:]) + "\n"
                     for r in (l.split(",") for l in text.splitlines()))
      (d / name).write_text(text)
    else:
      shutil.copy(os.path.join(FIXTURE, name), d / name)
  with open(d / "meta_Books.json", "rb") as f, gzip.open(d / "meta_Books.json.gz", "wb") as g:
    g.write(f.read())
  os.remove(d / "meta_Books.json")
  again = amazon.prepare(amazon.load_raw(str(d), columns="item,user"))
  np.testing.assert_array_equal(again.split.item, amazon.prepare(raw).split.item)
  assert again.raw_counts[0]["metadata lines"] == 7


@pytest.mark.parametrize("name, line, expect", [
    ("ratings_Movies_and_TV.csv", "U9,MV1,5.0", r", line 20: malformed line"),
    ("ratings_Movies_and_TV.csv", "U9,MV1,high,1300000000", r", line 20, field 'rating': "
     r"not a number"),
    ("ratings_Books.csv", "U1,BK1,6.0,1300000000", r", line 12, field 'rating': 6.0 outside"),
    ("ratings_Books.csv", "U1,BK1,4.0,-5", r", line 12, field 'timestamp': -5 is negative"),
    ("ratings_Books.csv", ",BK1,4.0,5", r", line 12, field 'user': empty"),
    ("meta_Books.json", "{'asin': 'BK3', 'title': 'x', 'categories': ['Books']}",
     r", line 8, field 'categories': expected a list of lists"),
    ("meta_Movies_and_TV.json", '{"asin": "MV8", "title": ["a list"]}',
     r", line 9, field 'title': expected a string"),
    ("meta_Movies_and_TV.json", '{"asin": "MV8", "title": "cut',
     r", line 9: neither JSON"),
    ("meta_Movies_and_TV.json", '{"title": "no asin"}', r", line 9, field 'asin': missing"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, name, line, expect):
  d = tmp_path / "raw"
  shutil.copytree(FIXTURE, d)
  with open(d / name, "a") as f:
    f.write(line + "\n")
  with pytest.raises(LineError, match=f"^file {d / name}{expect}"):
    amazon.load_raw(str(d))


def test_missing_file_and_command_line(tmp_path):
  with pytest.raises(DataError, match="ratings_Movies_and_TV.csv: missing"):
    amazon.load_raw(str(tmp_path))
  # The command: a bad line ends it with one line naming file, line and field, exit 1.
  d = tmp_path / "raw"
  shutil.copytree(FIXTURE, d)
  with open(d / "ratings_Books.csv", "a") as f:
    f.write("U1,BK1,4.0,soon\n")
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run([sys.executable, "-m", "tfrec.datasets.amazon", f"--raw={d}",
                        f"--out={tmp_path / 'out'}"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
  assert run.returncode == 1 and "Traceback" not in run.stderr
  assert (f"tfrec.datasets.amazon: file {d / 'ratings_Books.csv'}, line 12, field "
          "'timestamp': not an integer") in run.stderr


def test_command_line_in_process(tmp_path):
  from absl import flags
  from tfrec.datasets.amazon import __main__ as cli_main
  fv = flags.FlagValues()
  cli_main._define_flags(fv)
  out = tmp_path / "cli"
  fv(["amazon", f"--raw={FIXTURE}", f"--out={out}", "--num_shards=1", "--max_len=120",
      "--novalid", "--min_tag_count=3"])
  cli_main.main(["amazon"], fv)
  info = DatasetInfo.load(str(out))
  assert info.max_seq_len == 120 and info.num_tags == 5
  assert info.extra["splits"] == {"matching": ["train", "test_cold"]}
  assert not os.path.exists(out / "matching" / "valid.manifest.json")
  assert validate(str(out)).ok
