"""`python -m tfrec.datasets.microvideo --raw DIR --out DIR`: convert MicroVideo-1.7M (THACIL's
public layout) into the tfrec data contract (see `tfrec.datasets.microvideo`)."""

from __future__ import annotations

import os
import time
from typing import Sequence

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)
from tfrec.datasets.microvideo import ConvertConfig, convert, load_raw


def _define_flags(flag_values=None) -> None:
  """Defines the CLI flags (only when run as a program: importing defines no flags) on
  `flag_values` (default absl's FLAGS; tests pass their own `FlagValues`)."""
  from absl import flags
  fv = flag_values if flag_values is not None else flags.FLAGS
  d = ConvertConfig()
  flags.DEFINE_string("raw", None, "directory with train_data.csv, test_data.csv and the two "
                      "*_cover_image_feature.npy files", flag_values=fv)
  flags.DEFINE_string("out", None, "output dataset directory", flag_values=fv)
  flags.mark_flags_as_required(["raw", "out"], flag_values=fv)
  flags.DEFINE_float("valid_share", d.valid_share,
                     "latest share of each user's train_data.csv rows that forms valid",
                     flag_values=fv)
  flags.DEFINE_integer("max_seq_len", d.max_seq_len, "newest clicks kept per history",
                       flag_values=fv)
  flags.DEFINE_integer("num_categories", d.num_categories, "raw categories 0..N-1",
                       flag_values=fv)
  flags.DEFINE_integer("visual_dim", d.visual_dim, "cover feature width", flag_values=fv)
  flags.DEFINE_integer("num_shards", 16, "shards per split", flag_values=fv)


def main(argv: Sequence[str], flag_values=None) -> None:
  from absl import app, flags
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fl = flag_values if flag_values is not None else flags.FLAGS
  config = ConvertConfig(valid_share=fl.valid_share, max_seq_len=fl.max_seq_len,
                         num_categories=fl.num_categories, visual_dim=fl.visual_dim)
  begin = time.perf_counter()
  raw = load_raw(fl.raw, config.num_categories, config.visual_dim)
  print(f"read {len(raw.train):,} train and {len(raw.test):,} test rows in "
        f"{time.perf_counter() - begin:.1f} s", flush=True)
  convert(raw, fl.out, config, num_shards=fl.num_shards)
  print(f"total {time.perf_counter() - begin:.1f} s; statistics in "
        f"{os.path.join(fl.out, 'stats.md')}", flush=True)


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.datasets.microvideo", _define_flags)
