"""`python -m tfrec.export`: a trained run's serving SavedModel (`tfrec.serving`).

    python -m tfrec.export --run_dir=R --export_dir=E [--checkpoint=best|final|PATH]
                           [--data_dir=D] [--overwrite] [--ann=ivf|hnsw]
    python -m tfrec.export --flagfile=configs/baselines/cross_bst.flags --export_dir=serving/1

A retrieval export can then grow without retraining, into a NEW version directory
(`tfrec.serving.add_items`), and get an approximate index beside it (`tfrec.serving.ann`,
needs the optional `faiss` extra):

    python -m tfrec.export --add_items=ITEMS.npz --from_export=serving/1 --export_dir=serving/2
    python -m tfrec.export --from_export=serving/2 --ann=ivf      # writes serving/2.faiss
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
  --checkpoint, --data_dir, --overwrite among them) and --add_items, --from_export, --ann,
  --ann_nlist, --ann_nprobe (idempotent)."""
  tfrec_flags.define_flags()
  if "add_items" in flags.FLAGS:
    return
  flags.DEFINE_string("add_items", "", "ITEMS.npz: new items (item_id + their features) to add "
                      "to the retrieval index of --from_export, written to --export_dir.")
  flags.DEFINE_string("from_export", "", "An existing retrieval export (never modified).")
  flags.DEFINE_enum("ann", "", ["", "ivf", "hnsw"], "Also build a Faiss approximate index "
                    "beside the export (<export_dir>.faiss; pip install tfrec[faiss]).")
  flags.DEFINE_integer("ann_nlist", 0, "IVF lists (0: about 4 sqrt(index size)).")
  flags.DEFINE_integer("ann_nprobe", 0, "IVF lists searched per query (0: about nlist / 16).")


def _build_ann(path: str) -> None:
  from tfrec.serving import ann  # faiss is optional: imported only when asked for
  fl = flags.FLAGS
  out = ann.build(path, kind=fl.ann, nlist=fl.ann_nlist or None, nprobe=fl.ann_nprobe or None,
                  overwrite=fl.overwrite)
  meta = ann.load_meta(out)
  print(f"tfrec.export: wrote {out} ({meta['kind']}, recall@{meta['recall_k']} "
        f"{meta['recall']:.4f} against the exact top-k on {meta['recall_queries']} queries)")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    sys.exit(f"tfrec.export: unexpected arguments {argv[1:]}")
  fl = flags.FLAGS
  if fl.from_export and not fl.add_items:
    if not fl.ann:
      sys.exit("tfrec.export: --from_export needs --add_items=ITEMS.npz or --ann=ivf|hnsw")
    _build_ann(fl.from_export)
    return
  if fl.add_items:
    missing = [n for n in ("from_export", "export_dir") if not fl[n].value]
    if missing:
      sys.exit("tfrec.export: --add_items needs " + ", ".join("--" + m for m in missing) +
               " (--add_items=ITEMS.npz --from_export=SERVING/1 --export_dir=SERVING/2)")
    from tfrec.serving.add_items import add_items
    path = add_items(fl.from_export, fl.add_items, fl.export_dir, overwrite=fl.overwrite)
  else:
    missing = [n for n in ("run_dir", "export_dir") if not fl[n].value]
    if missing:
      sys.exit("tfrec.export: missing flags: " + ", ".join("--" + m for m in missing) +
               " (python -m tfrec.export --run_dir=RUN --export_dir=SERVING/1)")
    path = export_run(fl.run_dir, fl.export_dir, fl.checkpoint, data_dir=fl.data_dir or None,
                      overwrite=fl.overwrite)
  signatures = ", ".join(sorted(tf.saved_model.load(path).signatures))
  print(f"tfrec.export: wrote {path} (signatures {signatures}; "
        f"saved_model_cli show --dir {path} --all)")
  if fl.ann:
    _build_ann(path)


def run() -> None:
  cli.run(main, "tfrec.export", define_export_flags)


if __name__ == "__main__":
  run()
