"""Dataset commands end bad input with one line on stderr naming the file (and line or record, and
field), exit status 1 and no traceback (`tfrec.cli`). Each subprocess imports TensorFlow (a few
seconds), so there are five; the rest of `tfrec.cli` is tested in this process."""

import os
import subprocess
import sys

import pytest

from tfrec import cli
from tfrec.data.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args):
  """Runs `python -m module args`; returns (exit status, stdout, the one stderr line).

  Asserts the contract: no traceback, and exactly one stderr line from the command (TensorFlow's
  own log lines, if any, are not the command's)."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  mine = [line for line in out.stderr.splitlines() if line.startswith(module + ": ")]
  assert len(mine) == 1, out.stderr[-3000:]
  return out.returncode, out.stdout, mine[0]


# ----------------------------------------------------------------------------- subprocesses


def test_movielens_on_a_movielens_100k_directory(tmp_path):
  ml100k = tmp_path / "ml-100k"
  ml100k.mkdir()
  (ml100k / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
  (ml100k / "u.item").write_text("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0"
                                 "|0|0|0|0|0|0|0|0|0\n")
  (ml100k / "u.user").write_text("1|24|M|technician|85711\n")
  rc, _, line = _run("tfrec.datasets.movielens", f"--out={tmp_path / 'out'}", "--source=local",
                     f"--local_dir={ml100k}")
  assert rc == 1
  assert f"file {ml100k}: no MovieLens raw files: missing ratings.dat, movies.dat, users.dat" \
      in line
  assert "u.data, u.item, u.user are MovieLens-100K files" in line
  assert "RecBole atomic files, one each of *.inter, *.item, *.user" in line


def test_movielens_bad_rating_names_the_original_file_line_and_field(tmp_path):
  from test_movielens import RATINGS, write_grouplens
  bad = write_grouplens(tmp_path / "raw-bad", ratings=RATINGS[:2] + [(1, 5, 7, 200)])
  out = tmp_path / "out"
  rc, _, line = _run("tfrec.datasets.movielens", f"--out={out}", "--source=local",
                     f"--local_dir={bad}")
  assert rc == 1
  # The user's file, not the copy under OUT/raw (removed, so a fixed file is copied again).
  path = os.path.join(bad, "ratings.dat")
  assert line.startswith(f"tfrec.datasets.movielens: file {path}, line 3, field 'Rating': "
                         "value 7 outside 1..5")
  assert not os.path.exists(out / "raw")


def test_synthetic_bad_config(tmp_path):
  rc, _, line = _run("tfrec.datasets.synthetic", f"--out={tmp_path}", "--config=huge")
  assert rc == 1
  assert line == ("tfrec.datasets.synthetic: flag --config=huge: value should be one of "
                  "<tiny|small|default|large|semi|adapt|thacil|couple|m5> (--helpshort lists "
                  "the flags)")
  assert os.listdir(tmp_path) == []


def test_validate_damaged_shard(tiny_dir):
  shard = os.path.join(tiny_dir, "ranking", "train-00001-of-00002.tfrecord")
  with open(shard, "r+b") as f:
    f.seek(40)
    f.write(b"\xff" * 8)  # Inside the first record: checksum and record framing break.
  rc, stdout, line = _run("tfrec.data.validate", tiny_dir)
  assert rc == 1 and "FAILED" in stdout  # The full report stays on stdout.
  assert line.startswith(f"tfrec.data.validate: {tiny_dir}: ")
  assert f"the first: file {shard}: sha256" in line


def test_ccl_select_truncated_input(tiny_dir):
  shard = os.path.join(tiny_dir, "ranking", "train-00001-of-00002.tfrecord")
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) - 1)
  rc, _, line = _run("tfrec.datasets.ccl_select", f"--data_dir={tiny_dir}", "--mlen=1")
  assert rc == 1
  assert line.startswith(f"tfrec.datasets.ccl_select: file {shard}: ") and "truncated" in line
  assert not os.path.exists(os.path.join(tiny_dir, "ccl_pair"))


# ----------------------------------------------------------------------------- tfrec.cli


def _exit_line(fn, *args):
  with pytest.raises(SystemExit) as e:
    fn(*args)
  assert isinstance(e.value.code, str) and "\n" not in e.value.code
  return e.value.code


def test_guard_one_line_for_bad_input_traceback_for_bugs():
  from absl import app

  def raising(error):
    def main(argv):
      raise error
    return cli.guard("prog", main)

  err = DataError("/d/x.tfrecord", "label 5 not in {0, 1}", record=3, field="label")
  assert _exit_line(raising(err), []) == \
      "prog: file /d/x.tfrecord, record 3, field 'label': label 5 not in {0, 1}"
  assert _exit_line(raising(app.UsageError("usage: prog DIR")), []) == "prog: usage: prog DIR"
  from tfrec.datasets.movielens.raw import Unreachable
  assert _exit_line(raising(Unreachable("cannot download u")), []) == \
      "prog: Unreachable: cannot download u"
  assert _exit_line(raising(FileNotFoundError(2, "No such file", "/x")), []) == \
      "prog: FileNotFoundError: [Errno 2] No such file: '/x'"
  assert _exit_line(raising(KeyError("no model 'x'")), []) == "prog: KeyError: no model 'x'"
  with pytest.raises(RuntimeError, match="a bug"):
    raising(RuntimeError("a bug"))([])
  assert cli.guard("prog", lambda argv: None)([]) is None


def test_message_is_one_line():
  class OpError(Exception):  # Recognised by name and module, as tf.errors.OpError.
    def __init__(self, message):
      super().__init__(message)
      self.message = message
  OpError.__module__ = "tensorflow.python.framework.errors_impl"
  op = OpError("tfrec data error: file f, record 2, field 'x': bad\n\t [[{{node Assert}}]]")
  assert cli.is_expected(op) and not cli.is_expected(RuntimeError("x"))
  assert cli.message(op) == "tfrec data error: file f, record 2, field 'x': bad"


def test_parse_flags_one_line():
  from absl import flags
  fv = flags.FlagValues()
  flags.DEFINE_enum("config", "tiny", ["tiny", "small"], "preset", flag_values=fv)
  flags.DEFINE_string("out", None, "dir", flag_values=fv)
  flags.mark_flag_as_required("out", flag_values=fv)
  assert cli.parse_flags("p", ["p", "--out=x", "--config=small", "arg"], fv) == ["p", "arg"]
  assert fv.config == "small"
  fv.unparse_flags()
  assert _exit_line(cli.parse_flags, "p", ["p", "--out=x", "--config=huge"], fv) == (
      "p: flag --config=huge: value should be one of <tiny|small> (--helpshort lists the "
      "flags)")
  fv.unparse_flags()
  assert "p: flag --out=None: Flag --out must have a value other than None." in \
      _exit_line(cli.parse_flags, "p", ["p"], fv)
  fv.unparse_flags()
  assert "Unknown command line flag 'nope'" in \
      _exit_line(cli.parse_flags, "p", ["p", "--out=x", "--nope=1"], fv)
