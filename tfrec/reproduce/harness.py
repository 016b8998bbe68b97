"""The machinery every paper's reproduction shares: train each (row, seed) once, evaluate it with
the paper's protocol, cache both, and aggregate over seeds.

A row is one line of a paper's table: a registered model, its flagfile, extra flags, and
optionally a pre-training run it initialises from (`Pretrain`). Every run goes through the same
code paths a user runs (`tfrec.flags` -> `RunConfig` -> `train.train` -> `evaluate`), in this
process, one after the other. Each finished evaluation is cached as `<run_dir>/reproduce.json`,
so an interrupted reproduction resumes where it stopped, and a re-run only re-writes the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import flags as absl_flags
from absl import logging
import numpy as np
import tf_keras as keras

from tfrec import config as config_lib
from tfrec import evaluate as evaluate_lib
from tfrec import flags as tfrec_flags
from tfrec import metrics
from tfrec import train as train_lib
from tfrec.reproduce import report

RESULT_FILE = "reproduce.json"
# User-activity groups of SEMI Fig. 5: target-domain history length (after truncation).
ACTIVITY_GROUPS: Tuple[Tuple[str, int, int], ...] = (
    ("0-1", 0, 1), ("2-5", 2, 5), ("6-10", 6, 10), ("11-20", 11, 20), ("21+", 21, 10**9))


@dataclasses.dataclass(frozen=True)
class Pretrain:
  """A pre-training run (e.g. CCL) that rows initialise from: a model, its flagfile and flags."""

  name: str
  flagfile: str
  flags: Tuple[str, ...] = ()
  prepare: Optional[Callable[[str], None]] = None  # data_dir -> None (e.g. select a split)


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a table: `flagfile` (+ `flags`), initialised from `pretrain` when given."""

  name: str
  flagfile: str
  flags: Tuple[str, ...] = ()
  pretrain: Optional[Pretrain] = None

  @property
  def slug(self) -> str:
    return slugify(self.name)


def slugify(name: str) -> str:
  keep = [c.lower() if c.isalnum() else "_" for c in name]
  return "_".join(p for p in "".join(keep).split("_") if p)


@dataclasses.dataclass
class Settings:
  """What one reproduction run uses.

  Attributes:
    data_dir: the dataset (the tfrec data contract).
    work_dir: run directories go under it (`<work_dir>/<row>/seed<k>`).
    seeds: seeds 0..seeds-1 per row.
    scale_flagfile: flags applied after each row's own flagfile ("" = the rows' paper sizes).
    pretrain_flagfile: the same for pre-training runs.
    protocol: the sampled-ranking protocol of the paper (tfrec.metrics.PROTOCOLS).
    eval_split: the split results are reported on.
    extra_flags: flags appended to every ranking row's (e.g. fewer epochs on a larger dataset).
    max_eval_examples: evaluate the first N examples of the split (0: all of it).
  """

  data_dir: str
  work_dir: str
  seeds: int = 3
  scale_flagfile: str = ""
  pretrain_flagfile: str = ""
  protocol: str = "semi"
  eval_split: str = "test"
  extra_flags: Tuple[str, ...] = ()  # appended to every ranking row (after the overlay)
  max_eval_examples: int = 0  # 0: the whole split


def parse_config(argv: Sequence[str]) -> config_lib.RunConfig:
  """Flag arguments (flagfiles included) -> `RunConfig`, through `tfrec.flags` as the CLI."""
  fv = absl_flags.FlagValues()
  tfrec_flags.define_flags(fv)
  fv(["reproduce"] + list(argv))
  return tfrec_flags.run_config(fv)


def overlay_flags(path: str, model: str) -> List[str]:
  """A scale overlay's flags for `model`: model-size flags the model does not take (e.g.
  --num_heads for DIN) are left out; every other flag applies as written."""
  from tfrec.models import registry
  accepted = set(registry.accepted_args(registry.get(model).cls))
  out = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      name = line[2:].split("=", 1)[0]
      if name in tfrec_flags.MODEL_FLAGS and name not in accepted:
        continue
      out.append(line)
  return out


class Runner:
  """Trains and evaluates rows seed by seed, caching each finished (row, seed)."""

  def __init__(self, settings: Settings):
    self.s = settings
    self.timings: Dict[str, float] = {}

  # ------------------------------------------------------------------ runs

  def _common(self, seed: int, flagfile: str, extra: Sequence[str], scale: str,
              run_dir: str) -> List[str]:
    argv = [f"--flagfile={flagfile}"]
    if scale:
      argv += overlay_flags(scale, parse_config(argv + ["--run_dir=-"]).model.name)
    return argv + list(extra) + [f"--data_dir={self.s.data_dir}", f"--seed={seed}",
                                 f"--run_dir={run_dir}", "--export_dir=", "--verbose=0"]

  def _train(self, argv: Sequence[str], label: str) -> str:
    cfg = parse_config(argv)
    run_dir = cfg.train.run_dir
    final = config_lib.run_paths(run_dir)["final"] + ".index"
    if os.path.exists(final):
      return run_dir
    if os.path.isdir(run_dir):  # an interrupted run: start it again from scratch
      shutil.rmtree(run_dir)
    start = time.time()
    keras.backend.clear_session()
    train_lib.train(cfg)
    self.timings[label] = time.time() - start
    logging.info("trained %s in %.0f s", label, self.timings[label])
    return run_dir

  def pretrain_dir(self, p: Pretrain, seed: int) -> str:
    return os.path.join(self.s.work_dir, "pretrain", slugify(p.name), f"seed{seed}")

  def pretrain(self, p: Pretrain, seed: int) -> str:
    if p.prepare is not None:
      p.prepare(self.s.data_dir)
    return self._train(self._common(seed, p.flagfile, p.flags, self.s.pretrain_flagfile,
                                    self.pretrain_dir(p, seed)), f"{p.name} seed {seed}")

  def row_dir(self, row: Row, seed: int) -> str:
    return os.path.join(self.s.work_dir, row.slug, f"seed{seed}")

  def run(self, row: Row, seed: int) -> Dict[str, Any]:
    """Trains (unless cached) and evaluates (unless cached) one row with one seed."""
    run_dir = self.row_dir(row, seed)
    cached = os.path.join(run_dir, RESULT_FILE)
    if os.path.exists(cached):
      with open(cached) as f:
        return json.load(f)
    extra = list(row.flags)
    if row.pretrain is not None:
      extra.append(f"--init_from={self.pretrain(row.pretrain, seed)}")
    self._train(self._common(seed, row.flagfile, extra + list(self.s.extra_flags),
                             self.s.scale_flagfile, run_dir), f"{row.name} seed {seed}")
    start = time.time()
    keras.backend.clear_session()
    loaded = evaluate_lib.load_run(run_dir, "best")
    result = evaluate_lib.evaluate_split(loaded, self.s.eval_split, protocol=self.s.protocol,
                                         seed=seed, keep_arrays=True,
                                         max_examples=self.s.max_eval_examples)
    summary = summarize(result, row, seed)
    summary["eval_seconds"] = time.time() - start
    report.atomic_write_text(cached, json.dumps(summary, indent=1, sort_keys=True))
    return summary

  def run_all(self, rows: Sequence[Row]) -> Dict[str, List[Dict[str, Any]]]:
    """row name -> one summary per seed (seeds outermost, so every row has seed 0 first)."""
    out: Dict[str, List[Dict[str, Any]]] = {r.name: [] for r in rows}
    for seed in range(self.s.seeds):
      for row in rows:
        logging.info("reproduce: %s, seed %d", row.name, seed)
        out[row.name].append(self.run(row, seed))
    return out


# ------------------------------------------------------------------ summaries


def summarize(result: Mapping[str, Any], row: Row, seed: int) -> Dict[str, Any]:
  """The JSON-ready part of an evaluation that the report needs, plus Fig. 5's groups."""
  k = int(result["protocol"]["ks"][0])
  arrays = result.get("arrays", {})
  out = {"row": row.name, "seed": seed, "metrics": dict(result["metrics"]),
         "oracle": {m: v for m, v in result["oracle"].items() if isinstance(v, float)},
         "counts": dict(result["counts"]), "k": k,
         "groups": activity_groups(arrays, k) if arrays else {}}
  return out


def activity_groups(arrays: Mapping[str, np.ndarray], k: int) -> Dict[str, Dict[str, float]]:
  """Per target-history-length group (Fig. 5): examples, AUC and HR@k of the ranked positives.

  `arrays` from `evaluate(..., keep_arrays=True)`: per example "labels", "logits",
  "target_len"; per ranked positive "rows" (its example) and "scores" (positive first).
  """
  lens = np.asarray(arrays["target_len"])
  labels, logits = np.asarray(arrays["labels"]), np.asarray(arrays["logits"])
  rows = np.asarray(arrays.get("rows", np.zeros(0, np.int64)))
  scores = arrays.get("scores")
  out = {}
  for name, lo, hi in ACTIVITY_GROUPS:
    sel = (lens >= lo) & (lens <= hi)
    g: Dict[str, float] = {"examples": int(sel.sum())}
    both = sel.any() and 0 < labels[sel].sum() < sel.sum()
    g["auc"] = float(metrics.auc(labels[sel], logits[sel])) if both else float("nan")
    if scores is not None and len(rows):
      ranked = sel[rows]
      g["ranked"] = int(ranked.sum())
      g[f"hr@{k}"] = (float(metrics.hit_rate_at_k(scores[ranked, 0], scores[ranked, 1:], k))
                      if ranked.any() else float("nan"))
    out[name] = g
  return out


def values(results: Sequence[Mapping[str, Any]], metric: str, where: str = "metrics"
           ) -> List[float]:
  return [float(r[where][metric]) for r in results]
