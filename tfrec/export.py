"""`python -m tfrec.export`: a trained run's serving SavedModel (`tfrec.serving`).

    python -m tfrec.export --run_dir=R --export_dir=E [--checkpoint=best|final|PATH]
                           [--data_dir=D] [--overwrite]
    python -m tfrec.export --flagfile=configs/baselines/cross_bst.flags --export_dir=serving/1
"""

from __future__ import annotations

import sys
from typing import Sequence

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

from absl import flags
import tensorflow as tf

from tfrec import cli
from tfrec import flags as tfrec_flags
from tfrec.serving import export_run


# ------------------------------------------------------------------------------ command line


def define_export_flags() -> None:
  """The flags of `python -m tfrec.export`: `tfrec.flags.define_flags` (--run_dir, --export_dir,
  --checkpoint, --data_dir, --overwrite among them; idempotent)."""
  tfrec_flags.define_flags()


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    sys.exit(f"tfrec.export: unexpected arguments {argv[1:]}")
  fl = flags.FLAGS
  missing = [n for n in ("run_dir", "export_dir") if not fl[n].value]
  if missing:
    sys.exit("tfrec.export: missing flags: " + ", ".join("--" + m for m in missing) +
             " (python -m tfrec.export --run_dir=RUN --export_dir=SERVING/1)")
  path = export_run(fl.run_dir, fl.export_dir, fl.checkpoint, data_dir=fl.data_dir or None,
                    overwrite=fl.overwrite)
  signatures = ", ".join(sorted(tf.saved_model.load(path).signatures))
  print(f"tfrec.export: wrote {path} (signatures {signatures}; "
        f"saved_model_cli show --dir {path} --all)")


def run() -> None:
  cli.run(main, "tfrec.export", define_export_flags)


if __name__ == "__main__":
  run()
