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
from tfrec import evaluation as evaluate_lib
from tfrec import flags as tfrec_flags
from tfrec import metrics
from tfrec import train as train_lib
from tfrec.reproduce import report

RESULT_FILE = "reproduce.json"
ARRAYS_FILE = "reproduce_arrays.npz"
# Rows train without validation (nothing is chosen on the test split); "best" is then the
# epoch with the highest training AUC (CCL: the lowest training loss).
EVAL_CHECKPOINT = "best"
# SEMI Fig. 5 groups users by their target-domain history length; here the groups are the
# quantiles of that length on the evaluated split (absolute bins such as "0-1 events" hold a
# handful of examples on datasets whose test histories are long).
NUM_ACTIVITY_GROUPS = 5


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
    result = self._evaluate(run_dir, seed)
    summary = summarize(result, row, seed)
    summary["eval_seconds"] = time.time() - start
    report.atomic_write_text(cached, json.dumps(summary, indent=1, sort_keys=True))
    return summary

  def _evaluate(self, run_dir: str, seed: int) -> Dict[str, Any]:
    """Evaluates a run (`EVAL_CHECKPOINT`); keeps the per-example arrays (`ARRAYS_FILE`)."""
    keras.backend.clear_session()
    loaded = evaluate_lib.load_run(run_dir, EVAL_CHECKPOINT)
    result = evaluate_lib.evaluate_split(loaded, self.s.eval_split, protocol=self.s.protocol,
                                         seed=seed, keep_arrays=True,
                                         max_examples=self.s.max_eval_examples)
    save_arrays(os.path.join(run_dir, ARRAYS_FILE), result["arrays"])
    return result

  def arrays(self, row: Row, seed: int) -> Dict[str, np.ndarray]:
    """The per-example arrays of a finished (row, seed); evaluates again when a cache from an
    older version lacks them."""
    run_dir = self.row_dir(row, seed)
    path = os.path.join(run_dir, ARRAYS_FILE)
    if not os.path.exists(path):
      self.run(row, seed)
      if not os.path.exists(path):
        self._evaluate(run_dir, seed)
    with np.load(path) as f:
      return dict(f)

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
  """The JSON-ready part of an evaluation that the report needs."""
  return {"row": row.name, "seed": seed, "metrics": dict(result["metrics"]),
          "oracle": {m: v for m, v in result["oracle"].items() if isinstance(v, float)},
          "counts": dict(result["counts"]), "k": int(result["protocol"]["ks"][0]),
          "checkpoint": result["checkpoint"]["which"]}


def save_arrays(path: str, arrays: Mapping[str, Any]) -> None:
  """What Fig. 5 needs per example (history length, label, logit) and per ranked positive (its
  example and its 0-based rank among the negatives, ties against it)."""
  scores = arrays.get("scores")
  ranks = (metrics.rank_of_positive(scores[:, 0], scores[:, 1:]) if scores is not None
           else np.zeros(0, np.int64))
  tmp = report.incomplete_path(path) + ".npz"
  np.savez(tmp, target_len=np.asarray(arrays["target_len"]), labels=np.asarray(arrays["labels"]),
           logits=np.asarray(arrays["logits"]),
           rows=np.asarray(arrays.get("rows", np.zeros(0, np.int64))), ranks=ranks)
  os.replace(tmp, path)


def quantile_edges(lengths: np.ndarray, groups: int = NUM_ACTIVITY_GROUPS) -> List[int]:
  """Upper bounds (inclusive) of `groups` groups of about equal size by history length."""
  qs = np.quantile(np.asarray(lengths), np.linspace(0, 1, groups + 1)[1:-1], method="lower")
  edges = sorted(set(int(q) for q in qs))
  return edges + [int(np.max(lengths))] if edges[-1:] != [int(np.max(lengths))] else edges


def group_labels(edges: Sequence[int]) -> List[str]:
  lows = [0] + [e + 1 for e in edges[:-1]]
  return [f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in zip(lows, edges)]


def activity_groups(arrays: Mapping[str, np.ndarray], k: int, edges: Sequence[int]
                    ) -> Dict[str, Dict[str, float]]:
  """Per history-length group (`edges`: inclusive upper bounds): examples, AUC, and HR@k of
  the ranked positives (Fig. 5).

  `arrays` as `save_arrays` writes them: per example "target_len", "labels", "logits"; per
  ranked positive "rows" (its example) and "ranks" (0-based).
  """
  lens = np.asarray(arrays["target_len"])
  labels, logits = np.asarray(arrays["labels"]), np.asarray(arrays["logits"])
  rows, ranks = np.asarray(arrays["rows"]), np.asarray(arrays["ranks"])
  out = {}
  lo = 0
  for label, hi in zip(group_labels(edges), edges):
    sel = (lens >= lo) & (lens <= hi)
    lo = hi + 1
    both = sel.any() and 0 < labels[sel].sum() < sel.sum()
    g: Dict[str, float] = {"examples": int(sel.sum()),
                           "auc": float(metrics.auc(labels[sel], logits[sel])) if both
                           else float("nan")}
    ranked = sel[rows] if len(rows) else np.zeros(0, bool)
    g["ranked"] = int(ranked.sum())
    g[f"hr@{k}"] = float(np.mean(ranks[ranked] < k)) if ranked.any() else float("nan")
    out[label] = g
  return out


def values(results: Sequence[Mapping[str, Any]], metric: str, where: str = "metrics"
           ) -> List[float]:
  return [float(r[where][metric]) for r in results]
