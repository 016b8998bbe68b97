"""MicroVideo-1.7M raw files (THACIL, MM 2018) in the layout of the public code (Ocxs/THACIL):
reading and checking them, with errors naming file, line and field.

    DIR/train_data.csv              user,item,cate,label,timestamp (one header line)
    DIR/test_data.csv               same columns; items index the TEST feature matrix
    DIR/train_cover_image_feature.npy   <float32>[984,983, 512] cover features, row = train item
    DIR/test_cover_image_feature.npy    <float32>[719,897, 512] cover features, row = test item
    DIR/user_click_ids.npy          optional, not read (below)

Column order is that of the public code (`scripts/generate_data.py` reads row[0] user,
row[1] item, row[2] cate, row[3] label, row[-1] timestamp; `src/data_loader.py` skips the
first line of both CSVs without reading it). A first line whose five fields are all integers is
taken as data (no header); otherwise it is a header, and when its five names are recognised
(`COLUMN_ALIASES`, e.g. user_id, video_id, category, is_click, time) their order is used, else
the public code's order.

The two item columns index two DIFFERENT feature matrices: train item i is row i of
train_cover_image_feature.npy, test item i row i of test_cover_image_feature.npy
(`data_loader.get_test_cover_img_feature`; the train table is an embedding initialised from the
train features, padded with id 984,983). Equal numbers in the two CSVs are different items: the
test items are a disjoint, unseen (cold) set by construction, and no train history can hold one.

user_click_ids.npy is derived from train_data.csv by `generate_data.py` (each user's clicked
(item, cate, timestamp), sorted by time) and stored as a pickled object array; it is not read
(loading it would need allow_pickle): histories are rebuilt from train_data.csv.

Every problem raises `LineError` (file, 1-based line, field): wrong column count, a
non-integer, a negative id, a label outside {0, 1}, a category outside [0, num_categories), an
item index beyond its feature matrix, one item with two categories; for the .npy files a
`DataError` naming the file, the row (record) and field "visual" (NaN or inf, wrong shape).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfrec.data.errors import DataError
from tfrec.datasets.movielens.raw import LineError

TRAIN_CSV = "train_data.csv"
TEST_CSV = "test_data.csv"
TRAIN_FEATURES = "train_cover_image_feature.npy"
TEST_FEATURES = "test_cover_image_feature.npy"
CLICKS_NPY = "user_click_ids.npy"
COLUMNS = ("user", "item", "cate", "label", "timestamp")
COLUMN_ALIASES: Dict[str, Tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "iid", "video", "video_id", "vid", "photo_id"),
    "cate": ("cate", "cate_id", "category", "category_id", "cid"),
    "label": ("label", "click", "clicked", "is_click"),
    "timestamp": ("timestamp", "time", "ts", "time_stamp"),
}
_INT = re.compile(r"^\s*[+-]?\d+\s*$")


@dataclasses.dataclass
class RawInteractions:
  """One CSV file: <int64>[n] columns; `line` is each row's 1-based line number."""

  path: str
  user: np.ndarray
  item: np.ndarray
  cate: np.ndarray
  label: np.ndarray
  timestamp: np.ndarray
  line: np.ndarray
  header: Optional[List[str]]

  def __len__(self) -> int:
    return len(self.user)


@dataclasses.dataclass
class RawMicroVideo:
  """The raw dataset: both CSVs and both feature matrices ([rows, D] float32, memory-mapped)."""

  path: str
  train: RawInteractions
  test: RawInteractions
  train_features: np.ndarray
  test_features: np.ndarray
  feature_paths: Tuple[str, str]


def _column_order(first: List[str]) -> List[int]:
  """Positions of COLUMNS in the file, from a header (recognised names) or the default."""
  names = [f.strip().lower() for f in first]
  where = {}
  for col, aliases in COLUMN_ALIASES.items():
    hits = [i for i, n in enumerate(names) if n in aliases]
    if len(hits) == 1:
      where[col] = hits[0]
  if len(where) == len(COLUMNS) and len(set(where.values())) == len(COLUMNS):
    return [where[c] for c in COLUMNS]
  return list(range(len(COLUMNS)))


def _scan(path: str, lines: List[str], start: int) -> None:
  """Slow path: raises LineError at the first line that is not 5 integers."""
  for lineno, line in enumerate(lines[start:], start + 1):
    parts = line.split(",")
    if len(parts) != len(COLUMNS):
      raise LineError(path, f"malformed line {line[:80]!r}: expected {len(COLUMNS)} "
                      f"comma-separated fields, got {len(parts)}", record=lineno)
    for name, text in zip(COLUMNS, parts):
      if not _INT.match(text):
        what = "NaN" if text.strip().lower() == "nan" else f"not an integer: {text!r}"
        raise LineError(path, what, record=lineno, field=name)


def read_csv(path: str, num_features: int, num_categories: int) -> RawInteractions:
  """Reads and checks one interactions CSV.

  Args:
    path: the CSV file.
    num_features: rows of the feature matrix its item column indexes.
    num_categories: categories are 0..num_categories - 1.

  Returns:
    the rows, in file order, with their line numbers.

  Raises:
    LineError: file, line and field of the first problem (module docstring).
  """
  if not os.path.exists(path):
    raise DataError(path, "missing: MicroVideo-1.7M needs train_data.csv, test_data.csv and "
                    "the two cover feature .npy files (module tfrec.datasets.microvideo.raw)")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()
  lines = [l[:-1] if l.endswith("\r") else l for l in lines]
  first = lines[0].split(",") if lines else []
  header = None if len(first) == len(COLUMNS) and all(_INT.match(x) for x in first) else first
  start = 0 if header is None else 1
  order = _column_order(header) if header is not None else list(range(len(COLUMNS)))
  body = lines[start:]
  try:
    data = np.loadtxt(body, delimiter=",", dtype=np.int64, ndmin=2, comments=None) \
        if body else np.zeros([0, len(COLUMNS)], np.int64)
  except ValueError:
    data = None
  if data is None or data.shape != (len(body), len(COLUMNS)):
    _scan(path, lines, start)  # Blank lines, wrong counts, non-integers: named exactly.
    raise LineError(path, "unreadable as comma-separated integers")
  cols = {name: data[:, i] for name, i in zip(COLUMNS, order)}
  line = np.arange(start + 1, start + 1 + len(body), dtype=np.int64)

  def refuse(name: str, bad: np.ndarray, reason: str) -> None:
    if bad.any():
      i = int(np.argmax(bad))
      raise LineError(path, f"value {int(cols[name][i])} {reason}", record=int(line[i]),
                      field=name)

  refuse("user", cols["user"] < 0, "is negative")
  refuse("item", cols["item"] < 0, "is negative")
  refuse("item", cols["item"] >= num_features,
         f"beyond the feature matrix ({num_features} rows, item = row index)")
  refuse("cate", (cols["cate"] < 0) | (cols["cate"] >= num_categories),
         f"outside 0..{num_categories - 1}")
  refuse("label", (cols["label"] != 0) & (cols["label"] != 1), "outside {0,1}")
  # One category per item (THACIL §4.1: "each micro-video belongs to one and only one").
  order_i = np.lexsort((line, cols["item"]))
  it, ca = cols["item"][order_i], cols["cate"][order_i]
  clash = np.nonzero((it[1:] == it[:-1]) & (ca[1:] != ca[:-1]))[0]
  if len(clash):
    j = order_i[clash[np.argmin(line[order_i[clash + 1]])] + 1]
    raise LineError(path, f"item {int(cols['item'][j])} has category {int(cols['cate'][j])}, "
                    f"an earlier line gives it another", record=int(line[j]), field="cate")
  return RawInteractions(path=path, line=line, header=header, **cols)


def read_features(path: str, dim: Optional[int] = None) -> np.ndarray:
  """Memory-maps a cover feature matrix and checks it: 2-D float, finite, `dim` columns.

  Returns:
    <float>[rows, D] (memory-mapped; row = item index of its CSV).

  Raises:
    DataError: file, row (record) and field "visual" of the first NaN/inf, or the shape.
  """
  if not os.path.exists(path):
    raise DataError(path, "missing cover feature matrix", field="visual")
  try:
    x = np.load(path, mmap_mode="r", allow_pickle=False)
  except ValueError as e:
    raise DataError(path, f"not a numeric .npy array: {e}", field="visual") from None
  if x.ndim != 2 or x.dtype.kind != "f" or (dim is not None and x.shape[1] != dim):
    raise DataError(path, f"expected a float matrix [rows, {dim or 'D'}], got "
                    f"{x.dtype}{list(x.shape)}", field="visual")
  for lo in range(0, len(x), 65_536):
    bad = ~np.isfinite(np.asarray(x[lo:lo + 65_536])).all(axis=1)
    if bad.any():
      raise DataError(path, "NaN or inf in the cover feature", record=lo + int(np.argmax(bad)),
                      field="visual")
  return x


def load_raw(directory: str, num_categories: int = 512,
             visual_dim: Optional[int] = 512) -> RawMicroVideo:
  """Reads and checks the four files of MicroVideo-1.7M in `directory` (module docstring).

  Args:
    directory: the raw directory (the public code's data/input).
    num_categories: the category vocabulary (512 in THACIL §4.1).
    visual_dim: columns of both feature matrices (512); None accepts any equal width.
  """
  paths = [os.path.join(directory, n) for n in (TRAIN_FEATURES, TEST_FEATURES)]
  train_f = read_features(paths[0], visual_dim)
  test_f = read_features(paths[1], train_f.shape[1])
  train = read_csv(os.path.join(directory, TRAIN_CSV), len(train_f), num_categories)
  test = read_csv(os.path.join(directory, TEST_CSV), len(test_f), num_categories)
  return RawMicroVideo(path=directory, train=train, test=test, train_features=train_f,
                       test_features=test_f, feature_paths=(paths[0], paths[1]))
