"""How every `python -m tfrec...` command ends on bad input: one line on stderr that names what is
wrong (for data, the file, record and field), exit status 1, and no Python traceback.

    def main(argv): ...
    if __name__ == "__main__":
      cli.run(main, "tfrec.train", define_flags)

Errors a user can cause and fix are expected: `DataError` and every other `ValueError`, an
`OSError` (a missing or existing file, a permission, a full disk, an unreachable host), a bad
flag combination (`TypeError`/`KeyError` from model arguments), a TensorFlow error raised while
reading (the input pipeline's `tfrec data error:` messages name the file, record and field), and
absl's `UsageError` (bad positional arguments). A flag that does not parse (unknown flag, a
value outside an enum, a required flag missing) ends the same way from `run`'s flag parser.
Anything else is a bug in tfrec and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, List, NoReturn, Optional, Sequence

EXPECTED = (ValueError, TypeError, KeyError, OSError)


def _named(error: BaseException, name: str, module: str) -> bool:
  """Whether `error` is an instance of the class `name` of a module under `module` (by name:
  importing TensorFlow or absl only to recognise their errors would slow every command)."""
  return any(c.__name__ == name and c.__module__.startswith(module)
             for c in type(error).__mro__)


def is_expected(error: BaseException) -> bool:
  """Whether `error` is bad input (see the module docstring) rather than a bug."""
  if isinstance(error, EXPECTED):
    return True
  # tf.errors.OpError: the dataset commands never import TensorFlow.
  return (_named(error, "OpError", "tensorflow") or _named(error, "UsageError", "absl")
          or _named(error, "Error", "absl.flags"))


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
  """Exits with status 1 after one line on stderr: `prog: [Type: ]message` (no type for a
  ValueError, whose message names the problem: a DataError's names file, record and field)."""
  if isinstance(error, ValueError) or _named(error, "UsageError", "absl"):
    sys.exit(f"{prog}: {message(error)}")
  sys.exit(f"{prog}: {type(error).__name__}: {message(error)}")


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


def parse_flags(prog: str, argv: Sequence[str], flag_values=None) -> List[str]:
  """Parses `argv` into `flag_values` (default absl's FLAGS); a flag error (unknown flag, bad
  value, required flag missing) exits with one line `prog: <error> (--helpshort lists the
  flags)` and status 1, where absl would print two lines."""
  from absl import flags
  fv = flags.FLAGS if flag_values is None else flag_values
  try:
    return fv(list(argv))
  except flags.Error as e:
    sys.exit(f"{prog}: {message(e)} (--helpshort lists the flags)")


def run(main: Callable[[Sequence[str]], None], prog: str,
        define_flags: Optional[Callable[[], None]] = None) -> None:
  """`absl.app.run(guard(prog, main))` after `define_flags()`, flags parsed by `parse_flags`."""
  from absl import app
  if define_flags is not None:
    define_flags()
  app.run(guard(prog, main), flags_parser=lambda argv: parse_flags(prog, argv))
