"""`python -m tfrec.datasets.synthetic --out DIR
[--config=tiny|small|default|large|semi|adapt|thacil|couple|m5] [--set field=value ...]`: generate the synthetic cross-domain world (see
`tfrec.datasets.synthetic`). `--set` (repeatable) sets any `SyntheticConfig` field, typed from
the field (tuples: comma-separated floats); it is applied after the older override flags
(`--num_users`, `--transfer`, ...), which keep working."""

from __future__ import annotations

import os
from typing import Sequence

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)
from tfrec.datasets.synthetic.simulate import default_num_shards, generate
from tfrec.datasets.synthetic.world import CONFIGS, get_config, parse_assignments

# ----------------------------------------------------------------------------- CLI

_OVERRIDES = (("num_users", "integer"), ("visual_dim", "integer"), ("transfer", "float"),
              ("intent_drift", "float"), ("tag_overlap", "float"),
              ("cold_item_share", "float"), ("active_share", "float"))


def _define_flags() -> None:
  """Defines the CLI flags (only when run as a program, so importing defines no flags)."""
  from absl import flags
  flags.DEFINE_string("out", None, "output dataset directory")
  flags.mark_flag_as_required("out")
  flags.DEFINE_enum("config", "default", list(CONFIGS),
                    "preset: a size (tiny, small, default, large) or a paper's calibrated "
                    "world (semi, adapt, thacil, couple, m5)")
  flags.DEFINE_integer("seed", None, "random seed (default: the preset's, 0)")
  flags.DEFINE_integer("num_shards", None, "shards per kind/split (default: by num_users)")
  flags.DEFINE_integer("workers", None, "writer processes (default: min(CPUs, shards))")
  for name, kind in _OVERRIDES:
    getattr(flags, f"DEFINE_{kind}")(name, None, f"override the preset's {name}")
  flags.DEFINE_multi_string("set", [], "field=value: set any SyntheticConfig field "
                            "(repeatable; after the override flags)")


def main(argv: Sequence[str]) -> None:
  from absl import app, flags
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fl = flags.FLAGS
  overrides = {name: fl[name].value for name, _ in _OVERRIDES}
  overrides.update(parse_assignments(fl.set))
  config = get_config(fl.config, seed=fl.seed, **overrides)
  shards = fl.num_shards or default_num_shards(config.total_users)
  workers = fl.workers or min(os.cpu_count() or 1, shards)
  generate(config, fl.out, num_shards=shards, workers=workers)


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.datasets.synthetic", _define_flags)
