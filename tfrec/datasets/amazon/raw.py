"""Amazon review data (McAuley et al., http://jmcauley.ucsd.edu/data/amazon/) in its published
per-category layout: reading and checking the files, with errors naming file, line and field.

    DIR/ratings_<Category>.csv   ratings only, no header: user,item,rating,timestamp
                                 (the 2014 release; the 2018 release's <Category>.csv lists
                                 item,user,rating,timestamp: `columns="item,user"`)
    DIR/meta_<Category>.json     item metadata, one record per line: the 2014 files hold Python
                                 dict literals (`ast.literal_eval`), the 2018 ones JSON
                                 (`json.loads`); either is accepted on every line (JSON first)
Either file may also be gzipped (`<name>.gz`, as published), read when the plain one is absent.

Ratings: user (reviewerID) and item (asin) non-empty, rating a number in [1, 5] ("5.0"),
timestamp (unixReviewTime, seconds; whole days in these files) an integer >= 0. The target
category's file is read first; the source file's rows of users who never rated in the target
category are checked, counted and not kept (no such user can have a positive in both domains,
which the conversion requires), which keeps a 22.5M-line Books file to the users that matter.

Metadata fields read: `asin` (a non-empty string), `categories` (2014: a list of category paths,
each a list of strings, root first) or `category` (2018: one path, a list of strings), `title`
and `brand` (strings, optional). Strings are HTML-unescaped (the 2018 files hold `&amp;`).
Only the lines of items that have a kept rating are parsed: a regular expression reads each
line's asin first and the other lines are counted, not parsed (a line whose asin it cannot find
is parsed). A second line for the same asin is checked, counted and ignored (the 2018 files repeat
some items); an item without a line is the conversion's to count.

Every problem raises `LineError` (file, 1-based line, field; `tfrec.datasets.movielens.raw`):
a ratings line without exactly 4 comma-separated fields, an empty user or item, a rating or
timestamp out of range or not a number, bytes that are not UTF-8; a metadata line that is
neither JSON nor a Python literal or not a dict, a missing or empty asin, a field of the wrong
type. A missing file raises `DataError` naming it.
"""

from __future__ import annotations

import array
import ast
import dataclasses
import gzip
import html
import json
import os
import re
from typing import BinaryIO, Dict, List, Optional, Set, Tuple

import numpy as np

from tfrec.data.errors import DataError
from tfrec.datasets.movielens.raw import LineError

SOURCE = "Books"
TARGET = "Movies_and_TV"
COLUMN_ORDERS = ("user,item", "item,user")
_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]*)['"]""")


def ratings_file(directory: str, category: str) -> str:
  return os.path.join(directory, f"ratings_{category}.csv")


def meta_file(directory: str, category: str) -> str:
  return os.path.join(directory, f"meta_{category}.json")


@dataclasses.dataclass
class RawRatings:
  """One ratings file: <int64>/<float64>[n] columns in file order.

  Attributes:
    path: the file read.
    user: index into `RawAmazon.users`.
    item: index into `asins` (this category's items, in order of first appearance).
    rating: stars, 1..5.
    timestamp: seconds since 1970.
    line: 1-based line number of each row.
    asins: the category's item ids.
    lines: lines read.
    other_users: rows left out: their user never rated in the target category.
  """

  path: str
  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray
  line: np.ndarray
  asins: List[str]
  lines: int
  other_users: int

  def __len__(self) -> int:
    return len(self.user)


@dataclasses.dataclass(frozen=True)
class ItemMeta:
  """What the conversion reads of one metadata record."""

  categories: Tuple[Tuple[str, ...], ...]  # category paths, root first
  title: str
  brand: str


@dataclasses.dataclass
class RawMeta:
  """One metadata file, restricted to the items asked for.

  Attributes:
    path: the file read.
    items: asin -> `ItemMeta` (the first line of each asin).
    lines: lines read; skipped: lines of items not asked for (not parsed); duplicates: later
      lines of an asin already read; blank: whitespace-only lines.
  """

  path: str
  items: Dict[str, ItemMeta]
  lines: int = 0
  skipped: int = 0
  duplicates: int = 0
  blank: int = 0


@dataclasses.dataclass
class RawAmazon:
  """The raw files of one (source, target) pair of categories."""

  path: str
  source: str
  target: str
  users: List[str]
  ratings: Tuple[RawRatings, RawRatings]   # (source, target)
  meta: Tuple[RawMeta, RawMeta]            # (source, target)


def _open(path: str) -> Tuple[BinaryIO, str]:
  """(binary file, the path opened): `path`, else `path`.gz; DataError when neither exists."""
  if os.path.exists(path):
    return open(path, "rb"), path
  if os.path.exists(path + ".gz"):
    return gzip.open(path + ".gz", "rb"), path + ".gz"
  raise DataError(path, "missing (nor a .gz of it): the Amazon converter needs "
                  "ratings_<Category>.csv and meta_<Category>.json for the source and target "
                  "categories (module tfrec.datasets.amazon.raw)")


def _text(path: str, lineno: int, b: bytes, field: Optional[str]) -> str:
  try:
    return b.decode("utf-8")
  except UnicodeDecodeError as e:
    raise LineError(path, f"not UTF-8 ({e.reason} at byte {e.start})", record=lineno,
                    field=field) from None


def read_ratings(path: str, users: Dict[bytes, int], add_users: bool,
                 columns: str = "user,item") -> RawRatings:
  """Reads and checks one ratings CSV (module docstring).

  Args:
    path: ratings_<Category>.csv (or its .gz).
    users: reviewerID (bytes) -> user index, shared by both files; grown when `add_users`.
    add_users: True for the target file; False: rows of unknown users are checked, counted
      and left out.
    columns: "user,item" (2014) or "item,user" (2018) for the first two columns.

  Raises:
    LineError: file, line and field of the first problem.
  """
  if columns not in COLUMN_ORDERS:
    raise ValueError(f"columns must be one of {COLUMN_ORDERS}, not {columns!r}")
  ui = 0 if columns == "user,item" else 1
  names = columns.split(",") + ["rating", "timestamp"]
  asin_of: Dict[bytes, int] = {}
  asins: List[str] = []
  cols = [array.array("q"), array.array("q"), array.array("d"), array.array("q"),
          array.array("q")]
  other = 0
  lineno = 0
  f, path = _open(path)
  with f:
    for lineno, line in enumerate(f, 1):
      parts = line.rstrip(b"\r\n").split(b",")
      if len(parts) != 4:
        raise LineError(path, f"malformed line {line[:80]!r}: expected 4 comma-separated fields "
                        f"{','.join(names)}, got {len(parts)}", record=lineno)
      u, i, r, t = parts[ui], parts[1 - ui], parts[2], parts[3]
      for name, value in (("user", u), ("item", i)):
        if not value.strip():
          raise LineError(path, "empty", record=lineno, field=name)
      try:
        rating = float(r)
      except ValueError:
        raise LineError(path, f"not a number: {r!r}", record=lineno, field="rating") from None
      if not 1 <= rating <= 5:
        raise LineError(path, f"{r.decode('ascii', 'replace')} outside [1, 5]", record=lineno,
                        field="rating")
      try:
        ts = int(t)
      except ValueError:
        raise LineError(path, f"not an integer: {t!r}", record=lineno,
                        field="timestamp") from None
      if ts < 0:
        raise LineError(path, f"{ts} is negative", record=lineno, field="timestamp")
      uid = users.get(u)
      if uid is None:
        _text(path, lineno, u, "user")
        if not add_users:
          other += 1
          continue
        uid = users[u] = len(users)
      iid = asin_of.get(i)
      if iid is None:
        asins.append(_text(path, lineno, i, "item"))
        iid = asin_of[i] = len(asins) - 1
      for col, value in zip(cols, (uid, iid, rating, ts, lineno)):
        col.append(value)
  user, item, rating, ts, line = (
      np.frombuffer(c, np.float64 if c.typecode == "d" else np.int64).copy() for c in cols)
  return RawRatings(path=path, user=user, item=item, rating=rating, timestamp=ts, line=line,
                    asins=asins, lines=lineno, other_users=other)


def _parse(path: str, lineno: int, text: str) -> dict:
  """One metadata line: JSON (2018), else a Python literal (2014); a dict."""
  try:
    rec = json.loads(text)
  except ValueError as json_error:
    try:
      rec = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
      raise LineError(path, f"neither JSON ({json_error}) nor a Python literal "
                      f"({type(e).__name__}: {e})", record=lineno) from None
  if not isinstance(rec, dict):
    raise LineError(path, f"a {type(rec).__name__}, not a record (dict)", record=lineno)
  return rec


def _string(path: str, lineno: int, rec: dict, field: str) -> str:
  value = rec.get(field, "")
  if value is None:
    return ""
  if not isinstance(value, str):
    raise LineError(path, f"expected a string, got {type(value).__name__}", record=lineno,
                    field=field)
  return html.unescape(value).strip()


def _paths(path: str, lineno: int, rec: dict) -> Tuple[Tuple[str, ...], ...]:
  """The category paths: 2014 `categories` (list of lists) or 2018 `category` (one list)."""
  if "categories" in rec:
    field, value = "categories", rec["categories"]
    ok = isinstance(value, list) and all(
        isinstance(p, list) and all(isinstance(c, str) for c in p) for p in value)
    paths = value if ok else None
  elif "category" in rec:
    field, value = "category", rec["category"]
    ok = isinstance(value, list) and all(isinstance(c, str) for c in value)
    paths = [value] if ok else None
  else:
    return ()
  if paths is None:
    want = "a list of lists of strings" if field == "categories" else "a list of strings"
    raise LineError(path, f"expected {want}, got {str(value)[:80]!r}", record=lineno,
                    field=field)
  out = []
  for p in paths:
    entries = tuple(e for e in (html.unescape(c).strip() for c in p) if e)
    if entries:
      out.append(entries)
  return tuple(out)


def read_meta(path: str, wanted: Set[str]) -> RawMeta:
  """Reads the metadata lines of the items in `wanted` (module docstring).

  Raises:
    LineError: file, line (and field) of the first problem in a parsed line.
  """
  f, path = _open(path)
  meta = RawMeta(path=path, items={})
  with f:
    for lineno, b in enumerate(f, 1):
      meta.lines = lineno
      text = _text(path, lineno, b, None).strip()
      if not text:
        meta.blank += 1
        continue
      m = _ASIN.search(text)
      if m is not None and m.group(1) not in wanted:
        meta.skipped += 1
        continue
      rec = _parse(path, lineno, text)
      asin = rec.get("asin")
      if not isinstance(asin, str) or not asin.strip():
        raise LineError(path, "missing or not a non-empty string", record=lineno, field="asin")
      if asin not in wanted:
        meta.skipped += 1
        continue
      item = ItemMeta(categories=_paths(path, lineno, rec),
                      title=_string(path, lineno, rec, "title"),
                      brand=_string(path, lineno, rec, "brand"))
      if asin in meta.items:
        meta.duplicates += 1  # checked like the first, then ignored
        continue
      meta.items[asin] = item
  return meta


def load_raw(directory: str, source: str = SOURCE, target: str = TARGET,
             columns: str = "user,item") -> RawAmazon:
  """Reads and checks the four files of a (source, target) pair of categories.

  Args:
    directory: the raw directory.
    source, target: category names as in the file names ("Books", "Movies_and_TV").
    columns: the ratings files' first two columns, "user,item" (2014) or "item,user" (2018).
  """
  if source == target:
    raise ValueError(f"source and target are the same category {source!r}")
  users: Dict[bytes, int] = {}
  tgt = read_ratings(ratings_file(directory, target), users, True, columns)
  src = read_ratings(ratings_file(directory, source), users, False, columns)
  names = [""] * len(users)
  for k, v in users.items():
    names[v] = k.decode("utf-8")
  metas = tuple(read_meta(meta_file(directory, c), set(r.asins))
                for c, r in ((source, src), (target, tgt)))
  return RawAmazon(path=directory, source=source, target=target, users=names,
                   ratings=(src, tgt), meta=metas)


__all__ = ["COLUMN_ORDERS", "ItemMeta", "LineError", "RawAmazon", "RawMeta", "RawRatings",
           "SOURCE", "TARGET", "load_raw", "meta_file", "ratings_file", "read_meta",
           "read_ratings"]
