"""How every `python -m tfrec...` command ends on bad input: one line on stderr that names what is
wrong (for data, the file, record and field), exit status 1, and no Python traceback.

    def main(argv): ...
    if __name__ == "__main__":
      cli.run(main, "tfrec.train", define_flags)

Errors a user can cause and fix are expected: `DataError` and every other `ValueError`, missing
or existing files, a bad flag combination (`TypeError`/`KeyError` from model arguments), and a
TensorFlow error raised while reading (the input pipeline's `tfrec data error:` messages name the
file, record and field). Anything else is a bug in tfrec and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn, Optional, Sequence

EXPECTED = (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError,
            NotADirectoryError, IsADirectoryError, PermissionError)


def is_expected(error: BaseException) -> bool:
  """Whether `error` is bad input (see the module docstring) rather than a bug."""
  if isinstance(error, EXPECTED):
    return True
  # tf.errors.OpError, recognised by name: the dataset commands never import TensorFlow.
  return any(c.__name__ == "OpError" and c.__module__.startswith("tensorflow")
             for c in type(error).__mro__)


def message(error: BaseException) -> str:
  """The error's text on one line (a KeyError's repr quotes, an OpError's node trace dropped)."""
  text = getattr(error, "message", None) if not isinstance(error, EXPECTED) else None
  if text is None:
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  # TensorFlow appends "[[{{node ...}}]]" and stack summaries to an op's message.
  lines = [line for line in lines if not line.startswith(("[[", "\t", "Node:", "Op:"))]
  return " ".join(lines) or type(error).__name__


def fail(prog: str, error: BaseException) -> NoReturn:
  sys.exit(f"{prog}: {type(error).__name__}: {message(error)}" if not isinstance(
      error, ValueError) else f"{prog}: {message(error)}")


def guard(prog: str, main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
  """`main` that ends an expected error with one line and exit status 1 (`fail`)."""

  def guarded(argv: Sequence[str]) -> None:
    try:
      main(argv)
    except Exception as e:  # noqa: BLE001  (sorted by is_expected; the rest re-raised)
      if is_expected(e):
        fail(prog, e)
      raise

  return guarded


def run(main: Callable[[Sequence[str]], None], prog: str,
        define_flags: Optional[Callable[[], None]] = None) -> None:
  """`absl.app.run(guard(prog, main))` after `define_flags()`."""
  from absl import app
  if define_flags is not None:
    define_flags()
  app.run(guard(prog, main))
