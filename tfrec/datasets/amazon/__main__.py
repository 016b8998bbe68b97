"""`python -m tfrec.datasets.amazon --raw DIR --out DIR`: convert Amazon review files (source and
target categories) into COUPLE's cold-start protocol (see `tfrec.datasets.amazon`)."""

from __future__ import annotations

import os
import time
from typing import Sequence

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)
from tfrec.datasets import cold_start
from tfrec.datasets.amazon import ConvertConfig, convert, load_raw
from tfrec.datasets.amazon.raw import COLUMN_ORDERS, SOURCE, TARGET


def _define_flags(flag_values=None) -> None:
  """Defines the CLI flags (only when run as a program: importing defines no flags) on
  `flag_values` (default absl's FLAGS; tests pass their own `FlagValues`)."""
  from absl import flags
  fv = flag_values if flag_values is not None else flags.FLAGS
  d, c = ConvertConfig(), cold_start.ColdStartConfig()
  flags.DEFINE_string("raw", None, "directory with ratings_<Category>.csv and "
                      "meta_<Category>.json of both categories (or their .gz)", flag_values=fv)
  flags.DEFINE_string("out", None, "output dataset directory", flag_values=fv)
  flags.mark_flags_as_required(["raw", "out"], flag_values=fv)
  flags.DEFINE_string("source", SOURCE, "source (dense) category, as in the file names",
                      flag_values=fv)
  flags.DEFINE_string("target", TARGET, "target (cold-start) category", flag_values=fv)
  flags.DEFINE_enum("columns", COLUMN_ORDERS[0], list(COLUMN_ORDERS),
                    "first two columns of the ratings files (2014: user,item; 2018: item,user)",
                    flag_values=fv)
  flags.DEFINE_float("positive_above", d.positive_above, "a rating above this is a positive",
                     flag_values=fv)
  flags.DEFINE_integer("kcore", d.kcore, "users and items need >= kcore positives (0: off)",
                       flag_values=fv)
  flags.DEFINE_integer("min_tag_count", d.min_tag_count, "items a tag needs to be kept",
                       flag_values=fv)
  flags.DEFINE_integer("min_token_count", d.min_token_count,
                       "titles a word needs to be a title token", flag_values=fv)
  flags.DEFINE_integer("max_len", c.max_len, "newest events kept per history", flag_values=fv)
  flags.DEFINE_bool("valid", c.valid, "write a valid split (each user's second-to-last target "
                    "positive, its items erased from train); --novalid: the paper's split",
                    flag_values=fv)
  flags.DEFINE_integer("seed", c.seed, "seed of the cold-user choice", flag_values=fv)
  flags.DEFINE_integer("num_shards", 16, "shards per split", flag_values=fv)


def main(argv: Sequence[str], flag_values=None) -> None:
  from absl import app, flags
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fl = flag_values if flag_values is not None else flags.FLAGS
  config = ConvertConfig(
      positive_above=fl.positive_above, kcore=fl.kcore, min_tag_count=fl.min_tag_count,
      min_token_count=fl.min_token_count,
      protocol=cold_start.ColdStartConfig(max_len=fl.max_len, valid=fl.valid, seed=fl.seed))
  begin = time.perf_counter()
  raw = load_raw(fl.raw, fl.source, fl.target, fl.columns)
  src, tgt = raw.ratings
  print(f"read {tgt.lines:,} {fl.target} and {src.lines:,} {fl.source} rating lines, "
        f"{len(raw.users):,} users with a {fl.target} rating, in "
        f"{time.perf_counter() - begin:.1f} s", flush=True)
  convert(raw, fl.out, config, num_shards=fl.num_shards)
  print(f"total {time.perf_counter() - begin:.1f} s; statistics in "
        f"{os.path.join(fl.out, 'stats.md')}", flush=True)


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.datasets.amazon", _define_flags)
