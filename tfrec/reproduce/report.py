"""Pieces of the markdown results file: "mean ± std" cells, GitHub tables, significance markers,
and the atomic write that puts the file in place (a reader never sees half a file).
"""

from __future__ import annotations

import math
import os
import secrets
from typing import Iterable, Optional, Sequence

from tfrec.reproduce.stats import mean_std

_ALIGN = {"l": ":---", "c": ":---:", "r": "---:", "": "---"}


def fmt_mean_std(values: Iterable[float], digits: int = 4) -> str:
  """"mean ± std" of the runs, both to `digits` decimals: [0.7384, 0.7396, 0.7408] ->
  "0.7396 ± 0.0012". The std is the sample std (ddof=1), 0 for one run (`stats.mean_std`).

  Raises:
    ValueError: no values, or NaN or inf among them.
  """
  mean, std = mean_std(values)
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _cell(value: object) -> str:
  """A table cell: pipes escaped, line breaks turned into spaces (either would break the row)."""
  text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
  return text.replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   align: Optional[Sequence[str]] = None) -> str:
  """A GitHub-flavoured markdown table, ending in a newline.

  Args:
    header: column titles.
    rows: one list of cells per row, as many cells as `header`; cells are `str()`-ed, with `|`
      escaped as `\\|` and line breaks replaced by spaces.
    align: optional per column "l", "c", "r" or "" (default alignment, `---`).

  Raises:
    ValueError: a row (or `align`) has a different number of cells than `header`, or an unknown
      alignment.

  >>> print(markdown_table(["model", "AUC"], [["a|b", "0.7"]]), end="")
  | model | AUC |
  |---|---|
  | a\\|b | 0.7 |
  """
  n = len(header)
  if n == 0:
    raise ValueError("markdown_table needs at least one column")
  align = [""] * n if align is None else list(align)
  if len(align) != n:
    raise ValueError(f"align has {len(align)} entries for {n} columns")
  unknown = [a for a in align if a not in _ALIGN]
  if unknown:
    raise ValueError(f"unknown alignment {unknown}: use 'l', 'c', 'r' or ''")
  for i, row in enumerate(rows):
    if len(row) != n:
      raise ValueError(f"row {i} has {len(row)} cells for {n} columns: {list(row)}")
  lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
           "|" + "|".join(_ALIGN[a] for a in align) + "|"]
  lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def significance_marker(p: float,
                        levels: Sequence[tuple[float, str]] = ((0.01, "**"), (0.05, "*"))) -> str:
  """The marker of the strictest level that p falls below ("**" for p < 0.01, "*" for p < 0.05
  by default), "" otherwise or when p is NaN (no test possible)."""
  if p is None or math.isnan(p):
    return ""
  for level, marker in sorted(levels):
    if p < level:
      return marker
  return ""


def incomplete_path(path: str | os.PathLike) -> str:
  """A fresh sibling name for a file being written: `<path>.<pid>-<random>.incomplete`, in the
  same directory, so `os.replace` onto `path` is atomic (same file system)."""
  return f"{os.fspath(path)}.{os.getpid()}-{secrets.token_hex(4)}.incomplete"


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
  """Writes `text` (UTF-8) to `path` through a temporary file in the same directory and
  `os.replace`, creating missing parent directories; a failure leaves no temporary file behind
  and the old file, if any, intact. Returns the path."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = incomplete_path(path)
  try:
    with open(tmp, "x", encoding="utf-8", newline="") as f:  # "x": never another's temp file
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path
