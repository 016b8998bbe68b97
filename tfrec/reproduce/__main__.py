"""`python -m tfrec.reproduce --paper=semi|thacil|adapt|couple|m5 --dataset=synthetic|movielens [--seeds=5] [--scale=cpu]`

Chooses each row's learning rate from `--lr_grid` on the valid split (seed 0), trains every row
of the paper's tables and figures that tfrec has `--seeds` times with early stopping on the
valid split, evaluates each with the paper's protocol, and writes
`docs/results/<paper>_<dataset>.md` (mean ± std, bootstrap CIs over users, Welch p-values,
verdicts, the model selection) with PNG figures beside it. Finished (row, seed) runs are cached
under `--work_dir` by a key of their resolved configuration (`tfrec.reproduce.harness`), so an
interrupted reproduction resumes, a changed flag re-runs exactly the runs it changes, and
`--parts` reproduces a subset. `--workers=N` trains N runs at a time: N - 1 helper processes
(`--worker_index=1..N-1`, logs in `<work_dir>/worker<k>.log`) and this one each take the next
run no other holds and whose learning rate is chosen, every run under a file lock
(`harness.run_lock`); this process then writes the report from the cache. Rows of small models are a sequential loop per step, so on 2
cores `--workers=2` comes close to halving the wall time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Sequence

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

from absl import flags
from absl import logging

from tfrec import cli
from tfrec.reproduce import adapt
from tfrec.reproduce import couple
from tfrec.reproduce import harness
from tfrec.reproduce import m5
from tfrec.reproduce import semi
from tfrec.reproduce import sweep
from tfrec.reproduce import thacil

PAPERS = {"semi": semi, "thacil": thacil, "adapt": adapt, "couple": couple, "m5": m5}
DATASET_DIRS = {"movielens": "data/ml1m", "microvideo": "data/microvideo"}

flags.DEFINE_enum("paper", "semi", list(PAPERS), "Which paper to reproduce.")
flags.DEFINE_enum("dataset", "synthetic", ["synthetic", "movielens", "microvideo", "amazon"],
                  "synthetic: the planted generator (generated when missing); movielens: "
                  "MovieLens-1M as two domains (python -m tfrec.datasets.movielens --out DIR; "
                  "semi, adapt; thacil: data/ml1m_thacil); microvideo: THACIL's "
                  "MicroVideo-1.7M (python -m tfrec.datasets.microvideo --raw DIR --out DIR; "
                  "thacil); amazon: Amazon reviews Books -> Movies and TV (python -m "
                  "tfrec.datasets.amazon --raw DIR --out data/amazon_couple; couple; COUPLE "
                  "on MovieLens reads data/ml1m_couple: python -m tfrec.datasets.movielens "
                  "--view=couple --out data/ml1m_couple; M5 reads data/ml1m_m5: "
                  "--view=m5).")
flags.DEFINE_integer("seeds", harness.DEFAULT_SEEDS, "Seeds per row (0 .. seeds-1).")
flags.DEFINE_enum("scale", "cpu", ["cpu", "paper"], "cpu: the scaled-down variant for 2 CPU "
                  "cores; paper: the paper's sizes (A.1).")
flags.DEFINE_string("data_dir", None, "Dataset directory (default: data/reproduce/syn-<preset> "
                    "or data/ml1m).")
flags.DEFINE_string("work_dir", None, "Run directories (default: runs/reproduce/"
                    "<paper>_<dataset>_<scale>).")
flags.DEFINE_string("results_dir", "docs/results", "Where the results file and figures go.")
flags.DEFINE_list("parts", [], "Subset of the paper's parts (default: all): semi "
                  f"{', '.join(semi.PARTS)}; thacil {', '.join(thacil.PARTS)}; adapt "
                  f"{', '.join(adapt.PARTS)}; couple {', '.join(couple.PARTS)}; m5 "
                  f"{', '.join(m5.PARTS)}.")
flags.DEFINE_multi_string("extra_flags", [], "A flag appended to every ranking row's (repeat "
                          "for several), e.g. --extra_flags=--epochs=2 on a larger dataset.")
flags.DEFINE_integer("max_eval_examples", 0, "Evaluate all examples of users of the test split "
                     "sampled at random with --eval_seed, at most N examples (0: all).")
flags.DEFINE_integer("eval_seed", 0, "Evaluation seed of every run (sampled negatives and "
                     "users): every row and seed is evaluated on the same examples.")
flags.DEFINE_list("lr_grid", [harness.lr_name(x) for x in harness.DEFAULT_LR_GRID],
                  "Learning rates tried on seed 0 of each row; the one with the best validation "
                  "AUC on `valid` trains every seed (empty: each flagfile's rate). Pre-training "
                  "(CCL) keeps its flagfile's rate.")
flags.DEFINE_string("sweep", None, "FIELD=v1,v2,...: a regime sweep of one synthetic-world "
                    "knob (tfrec.reproduce.sweep): the world is generated per value and the "
                    "rows of --claims are compared in each; writes "
                    "<results_dir>/<paper>_synthetic_sweep_<FIELD>.md and regime-map PNGs.")
flags.DEFINE_multi_string("claims", [], "With --sweep: the paper's claims to measure (their "
                          "text, repeatable; default: all).")
flags.DEFINE_integer("workers", 1, "Processes training runs at once on a shared work "
                     "directory (each run under a file lock); 1: this process alone.",
                     lower_bound=1)
flags.DEFINE_integer("worker_index", 0, "Internal: a helper process started by --workers "
                     "(takes its share of the runs, writes no report).", lower_bound=0)
FLAGS = flags.FLAGS


def world_name(scale) -> str:
  return getattr(scale, "world_name", scale.synthetic_preset)


def dataset_dir(paper, dataset: str, scale) -> str:
  if FLAGS.data_dir:
    return FLAGS.data_dir
  if dataset == "synthetic":
    return f"data/reproduce/syn-{world_name(scale)}"
  return getattr(paper, "DATA_DIRS", {}).get(dataset, DATASET_DIRS[dataset])


def experiments(paper, scale, dataset: str):
  """The paper's rows on `dataset` (a paper whose rows depend on the dataset takes it)."""
  import inspect
  if "dataset" in inspect.signature(paper.experiments).parameters:
    return paper.experiments(scale, dataset=dataset)
  return paper.experiments(scale)


def prepare_dataset(paper, dataset: str, data_dir: str, scale) -> str:
  """Generates the synthetic world when missing; returns a description for the report."""
  from tfrec.data.info import DatasetInfo
  if dataset == "synthetic":
    if not os.path.exists(os.path.join(data_dir, "dataset.json")):
      from tfrec.datasets import synthetic
      logging.info("generating the synthetic %s world in %s", world_name(scale), data_dir)
      synthetic.generate(paper.world_config(scale), data_dir, verbose=False)
  elif not os.path.exists(os.path.join(data_dir, "dataset.json")):
    raise FileNotFoundError(f"{data_dir}: no converted {dataset} dataset here; run `python -m "
                            f"tfrec.datasets.{dataset} ... --out {data_dir}` first")
  if hasattr(paper, "prepare"):  # what the paper's rows need in the dataset (SEMI's vectors)
    paper.prepare(data_dir, scale)
  info = DatasetInfo.load(data_dir)
  overrides = dict(getattr(scale, "world_overrides", ()))
  what = {"synthetic": f"synthetic preset `{scale.synthetic_preset}`"
                       + "".join(f", {k} = {v}" for k, v in overrides.items()),
          "movielens": "MovieLens-1M as two domains",
          "microvideo": "MicroVideo-1.7M (THACIL's public layout)",
          "amazon": "Amazon reviews, Books -> Movies and TV (COUPLE §4.1)"}[dataset]
  return (f"{what} in `{data_dir}`: {info.num_items:,} items, {info.num_users:,} users "
          f"(`dataset.json`: {info.name})")


def _settings(paper, data_dir: str, work_dir: str, scale) -> harness.Settings:
  """The harness settings: the paper's (split, protocol, ...) and the command line's."""
  own = dict(paper.harness_settings(scale, FLAGS.dataset))
  extra = tuple(own.pop("extra_flags", ())) + tuple(FLAGS.extra_flags)
  return harness.Settings(**own, extra_flags=extra, data_dir=data_dir, work_dir=work_dir,
                          seeds=FLAGS.seeds,
                          scale_flagfile=scale.scale_flagfile,
                          pretrain_flagfile=scale.pretrain_flagfile,
                          max_eval_examples=FLAGS.max_eval_examples,
                          eval_seed=FLAGS.eval_seed,
                          lr_grid=tuple(float(x) for x in FLAGS.lr_grid))


def run_sweep(paper, scale) -> None:
  """--sweep: the chosen claims across the values of one synthetic-world knob."""
  if FLAGS.dataset != "synthetic":
    raise ValueError("--sweep varies a knob of the synthetic world: use --dataset=synthetic")
  preset = scale.synthetic_preset
  field, values = sweep.parse(FLAGS.sweep, preset)
  claims = sweep.chosen_claims(paper.CLAIMS, FLAGS.claims)
  by_name = {r.name: r for r in experiments(paper, scale, "synthetic").rows(paper.PARTS)}
  rows = [by_name[n] for n in dict.fromkeys(x for c in claims for x in (c.a, c.b))]
  work_dir = FLAGS.work_dir or f"runs/reproduce/{FLAGS.paper}_sweep_{field}_{scale.name}"
  data_base = FLAGS.data_dir or "data/reproduce/sweep"
  helpers = [] if FLAGS.worker_index else start_helpers(work_dir)
  selection = {}
  points = sweep.run_sweep(field, values, claims, rows, preset, data_base,
                           _settings(paper, "", work_dir, scale),
                           getattr(paper, "SWEEP_METRICS", paper.METRICS),
                           overrides=dict(getattr(scale, "world_overrides", ())),
                           world_name=world_name(scale),
                           prepare=((lambda d: paper.prepare(d, scale))
                                    if hasattr(paper, "prepare") else None),
                           worker=(FLAGS.worker_index, FLAGS.workers),
                           selection=selection)
  if FLAGS.worker_index:
    return
  wait_for(helpers, work_dir)
  out = os.path.join(FLAGS.results_dir, f"{FLAGS.paper}_synthetic_sweep_{field}.md")
  command = (f"python -m tfrec.reproduce --paper={FLAGS.paper} --scale={scale.name} "
             f"--seeds={FLAGS.seeds} --sweep={FLAGS.sweep}"
             + "".join(f' --claims="{c}"' for c in FLAGS.claims)
             + "".join(f" --extra_flags={x}" for x in FLAGS.extra_flags)
             + (f" --lr_grid={','.join(FLAGS.lr_grid)}"
                if tuple(float(x) for x in FLAGS.lr_grid) != harness.DEFAULT_LR_GRID else ""))
  overrides = dict(getattr(scale, "world_overrides", ()))
  world = f"`{preset}`" + "".join(f", {k} = {v}" for k, v in overrides.items())
  path = sweep.write_report(out, FLAGS.paper, field, values, world, FLAGS.seeds, points,
                            getattr(paper, "SWEEP_METRICS", paper.METRICS), command,
                            selection=selection)
  print(f"tfrec.reproduce: wrote {path}")


def start_helpers(work_dir: str):
  """Starts the --workers helper processes: this command again with --worker_index=k."""
  helpers = []
  os.makedirs(work_dir, exist_ok=True)
  for k in range(1, FLAGS.workers):
    log = open(os.path.join(work_dir, f"worker{k}.log"), "w")
    argv = [a for a in sys.argv[1:] if not a.startswith("--worker_index")]
    helpers.append((k, subprocess.Popen(
        [sys.executable, "-m", "tfrec.reproduce", *argv, f"--worker_index={k}"],
        stdout=log, stderr=subprocess.STDOUT)))
    log.close()
  return helpers


def wait_for(helpers, work_dir: str) -> None:
  """Waits for the --workers helpers; a failed one is reported (its runs were trained by this
  process instead: their locks were released)."""
  for k, proc in helpers:
    if proc.wait():
      logging.warning("reproduce worker %d exited with %d; see %s", k, proc.returncode,
                      os.path.join(work_dir, f"worker{k}.log"))


def report_command(paper, parts: Sequence[str], lr_grid) -> str:
  """The command line that regenerates a report: the flags given that change what it holds
  or where it and its runs live."""
  return "python -m tfrec.reproduce " + " ".join(
      [f"--{n}={FLAGS[n].value}" for n in ("paper", "dataset", "seeds", "scale")]
      + [f"--parts={','.join(parts)}"] * (list(parts) != list(paper.PARTS))
      + [f"--extra_flags={x}" for x in FLAGS.extra_flags]
      + [f"--max_eval_examples={FLAGS.max_eval_examples}"] * bool(FLAGS.max_eval_examples)
      + [f"--eval_seed={FLAGS.eval_seed}"] * bool(FLAGS.eval_seed)
      + [f"--lr_grid={','.join(FLAGS.lr_grid)}"] * (tuple(lr_grid) != harness.DEFAULT_LR_GRID)
      # Where a report and its runs live when not the defaults (a variant beside the main
      # report keeps its own cache: the same rows with other flags would retrain in place).
      + [f"--{n}={FLAGS[n].value}" for n in ("results_dir", "work_dir")
         if FLAGS[n].value not in (None, FLAGS[n].default)])


def main(argv: Sequence[str]) -> None:
  del argv
  paper = PAPERS[FLAGS.paper]
  scale = paper.SCALES[FLAGS.scale]
  unknown = sorted(set(FLAGS.parts) - set(paper.PARTS))
  if unknown:
    sys.exit(f"tfrec.reproduce: unknown --parts {unknown} for {FLAGS.paper}; choose from "
             f"{paper.PARTS}")
  if FLAGS.dataset not in paper.DATASETS:
    sys.exit(f"tfrec.reproduce: --paper={FLAGS.paper} runs on {', '.join(paper.DATASETS)}, "
             f"not {FLAGS.dataset}")
  parts = list(FLAGS.parts) or list(paper.PARTS)
  if FLAGS.sweep:
    run_sweep(paper, scale)
    return
  data_dir = dataset_dir(paper, FLAGS.dataset, scale)
  dataset_text = prepare_dataset(paper, FLAGS.dataset, data_dir, scale)
  work_dir = FLAGS.work_dir or f"runs/reproduce/{FLAGS.paper}_{FLAGS.dataset}_{scale.name}"
  settings = _settings(paper, data_dir, work_dir, scale)
  exp = experiments(paper, scale, FLAGS.dataset)
  rows = exp.rows(parts)
  logging.info("reproducing %d rows x %d seeds of %s on %s", len(rows), FLAGS.seeds,
               FLAGS.paper, data_dir)
  start = time.time()
  runner = harness.Runner(settings, worker=(FLAGS.worker_index, FLAGS.workers))
  if FLAGS.worker_index:
    runner.run_all(rows, own_only=True)
    return
  helpers = start_helpers(work_dir)
  results = runner.run_all(rows)
  wait_for(helpers, work_dir)
  out = os.path.join(FLAGS.results_dir, f"{FLAGS.paper}_{FLAGS.dataset}.md")
  command = report_command(paper, parts, settings.lr_grid)
  # Every row's per-example arrays: the bootstrap CIs (all rows) and Fig. 5.
  arrays = {row.name: [runner.arrays(row, s) for s in range(FLAGS.seeds)] for row in rows}
  # What a paper reports beyond its ranking rows (ADAPT's Table VII matching), run and cached
  # through the same runner.
  extra = ({"extra": paper.extra_results(runner, exp, parts, FLAGS.seeds)}
           if hasattr(paper, "extra_results") else {})
  path = paper.write_report(results, exp, scale, FLAGS.dataset, dataset_text, out,
                            time.time() - start, command, runner.timings,
                            extra_flags=settings.extra_flags,
                            max_eval_examples=FLAGS.max_eval_examples, arrays=arrays, **extra)
  print(f"tfrec.reproduce: wrote {path}")


if __name__ == "__main__":
  cli.run(main, "tfrec.reproduce")
