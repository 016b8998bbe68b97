"""`python -m tfrec.evaluate --flagfile=configs/<paper>/<variant>.flags`: offline evaluation of a
trained run on ranking splits, written as JSON and markdown (`tfrec.evaluation` says what is
measured and how). A run with ADAPT's feature extractor (dual, aden) is also evaluated on
storytelling-to-product matching (`--dual_matching`, Table VII) and answers `--nearest_to`; a
run whose model exposes its attention draws Fig. 6's case study (`--attention_examples=N`)."""

from __future__ import annotations

import sys
from typing import Sequence

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

from absl import app
from absl import flags

from tfrec import cli
from tfrec import config as config_lib
from tfrec import flags as tfrec_flags
from tfrec.evaluation import evaluate_split, load_run, retrieval
from tfrec.evaluation.report import output_path, to_markdown, write_result
from tfrec.evaluation.sampled import POOLS, PROTOCOL_NAMES
from tfrec.metrics.ranking import GAUC_REDUCTIONS

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The shared flags (`tfrec.flags`: --run_dir, --checkpoint, ...) plus evaluate's own
  (idempotent)."""
  tfrec_flags.define_flags()
  if "splits" in FLAGS:
    return
  flags.DEFINE_list("splits", None, "Ranking splits to evaluate (default: test), e.g. "
                    "test,test_cold.")
  flags.DEFINE_enum("gauc_reduction", "samples", list(GAUC_REDUCTIONS), "GAUC over users: mean "
                    "(EasyRec), samples (weighted by the user's examples: FuxiCTR, THACIL's "
                    "code), positives (RecBole).")
  flags.DEFINE_enum("protocol", "semi", list(PROTOCOL_NAMES) + [retrieval.FULL],
                    "Sampled ranking: semi (300 random unseen negatives, K=3), adapt (K=5), "
                    "couple (50 random + 50 popular, K=5,10), sasrec (100 random, K=10), none "
                    "(AUC/GAUC only); full (retrieval runs: the whole candidate pool, the "
                    "user's history excluded, K from --retrieval_ks).")
  flags.DEFINE_list("retrieval_ks", ["10", "50"], "K of HR/Recall/NDCG@K for --protocol=full "
                    "(retrieval runs).")
  flags.DEFINE_list("topk", [], "THACIL §4.4 / Fig. 4 on ranking runs: precision, recall, "
                    "F-score and NDCG of each user's top-K impressions of the split at these "
                    "K (e.g. 10,20,30; empty: none).")
  flags.DEFINE_bool("dual_matching", False, "ADAPT Table VII on a run with a feature extractor "
                    "(dual, aden): the dual_pair split's products as queries, the storytelling "
                    "items mounting them as ground truth, AUC@500, HR@5, NDCG@5 by Euclidean "
                    "distance of the extractor's features (--splits: dual_pair splits).")
  flags.DEFINE_list("nearest_to", [], "Product ids: print each one's 5 nearest storytelling "
                    "items in the run's extractor feature space (dual, aden runs).")
  flags.DEFINE_integer("attention_examples", 0, "ADAPT Fig. 6 on a run whose model exposes "
                       "its attention (aden): the first N impressions of each split as "
                       "TensorBoard heat maps and tables under <run_dir>/logs/attention/<split> "
                       "(tfrec.evaluation.attention), printed too; no metrics are computed.")
  flags.DEFINE_enum("negative_pool", "auto", list(POOLS), "Negatives come from target items: "
                    "auto (the cold ones for a split named *cold*, else the non-cold ones), "
                    "warm, cold or all.")
  flags.DEFINE_integer("eval_seed", 0, "Seed of the sampled negatives.")
  flags.DEFINE_integer("max_examples", 0, "Evaluate all examples of users sampled at random "
                       "with --eval_seed, at most N examples (0: every example).")
  flags.DEFINE_string("output_json", None, "JSON result path (default <run_dir>/eval/"
                      "<split>.json); may use {split} {checkpoint} {protocol} {reduction}.")
  flags.DEFINE_string("output_md", None, "Markdown result path (default <run_dir>/eval/"
                      "<split>.md); same placeholders.")


DEFAULT_SPLIT = "test"


def _splits(fl) -> Sequence[str]:
  """--splits, else "test" (never the split the run validated on: see the result's header)."""
  if fl.splits:
    return [s.strip() for s in fl.splits if s.strip()]
  return [DEFAULT_SPLIT]


def _check_model_flags(fl, cfg: config_lib.RunConfig) -> None:
  """Model flags (e.g. from the training flagfile) must agree with the run's config.json, which
  decides the model: a differing one is an error, never silently ignored."""
  from tfrec.models import model_args
  given = {} if fl.model is None else {"model": fl.model}
  if fl.model_args:  # typed as the run's model takes them (others' arguments are skipped)
    given.update(model_args.resolve(fl.model or cfg.model.name,
                                    model_args.parse(fl.model_args))[0])
  if not fl["max_seq_len"].using_default_value:
    given["max_seq_len"] = fl.max_seq_len
  have = {"model": cfg.model.name, "max_seq_len": cfg.data.max_seq_len, **cfg.model.kwargs}
  flag = lambda k: f"--{k}" if k in ("model", "max_seq_len") else f"--model_args={k}"  # noqa
  diff = [f"{flag(k)}={v} (the run has {have.get(k, 'the model default')})"
          for k, v in given.items() if v is not None and have.get(k) != v]
  if diff:
    raise ValueError(f"{fl.run_dir} holds a {cfg.model.name} model whose config.json decides "
                     f"the model; these flags disagree with it: {'; '.join(diff)}")


def _is_retrieval_run(run_dir: str) -> bool:
  from tfrec.models import registry
  from tfrec.models.retrieval import RetrievalModel
  cfg = config_lib.RunConfig.load(run_dir)
  return issubclass(registry.get(cfg.model.name).cls, RetrievalModel)


def _evaluate_retrieval(fl) -> None:
  """A retrieval run: HR/Recall/NDCG@K on each split (`tfrec.evaluation.retrieval`)."""
  if fl.data_dir:
    raise ValueError("--data_dir: retrieval runs are evaluated on their own dataset")
  ks = [int(k) for k in fl.retrieval_ks]
  for split in _splits(fl):
    result = retrieval.evaluate_retrieval_run(
        fl.run_dir, split, fl.protocol, ks, fl.checkpoint, fl.negative_pool, fl.eval_seed,
        fl.max_examples)
    paths = [output_path(t, fl.run_dir, split, fl.checkpoint, fl.protocol, "retrieval", ext)
             for t, ext in ((fl.output_json, "json"), (fl.output_md, "md"))]
    write_result(result, *paths, markdown=retrieval.to_markdown)
    print(retrieval.to_markdown(result))
    print(f"tfrec.evaluate: wrote {paths[0]} and {paths[1]}", flush=True)


def _evaluate_matching(fl) -> None:
  """--dual_matching / --nearest_to on a run with ADAPT's extractor."""
  from tfrec import runs
  from tfrec.evaluation import dual_matching
  model, cfg, info, store = runs.restore_model(
      fl.run_dir, runs.checkpoint_path(fl.run_dir, fl.checkpoint), data_dir=fl.data_dir)
  extractor = dual_matching.extractor_of(model)
  for product, stories in dual_matching.nearest_stories(
      extractor, store, [int(x) for x in fl.nearest_to]):
    print(f"product {product}: " + ", ".join(f"storytelling {s} (distance {d:.3f})"
                                             for s, d in stories))
  if not fl.dual_matching:
    return
  for split in _splits(fl):
    reader = runs.reader(cfg, split, training=False, info=info, kind="dual_pair")
    result = dual_matching.evaluate(extractor, store, dual_matching.pairs_of_split(reader))
    result.update(split=split, run_dir=fl.run_dir, checkpoint=fl.checkpoint,
                  model=cfg.model.name)
    paths = [output_path(t, fl.run_dir, f"dual_matching_{split}", fl.checkpoint,
                         "dual_matching", "", ext)
             for t, ext in ((fl.output_json, "json"), (fl.output_md, "md"))]
    title = f"Storytelling-to-product matching: {cfg.model.name}, dual_pair split {split}"
    write_result(result, *paths, markdown=lambda r: dual_matching.to_markdown(r, title))
    print(dual_matching.to_markdown(result, title))
    print(f"tfrec.evaluate: wrote {paths[0]} and {paths[1]}", flush=True)


def _attention_case_studies(fl) -> None:
  """--attention_examples: Fig. 6's heat maps of the first N impressions of each split."""
  import os
  from tfrec import runs
  from tfrec.evaluation import attention
  if fl.attention_examples < 0:
    raise ValueError(f"--attention_examples={fl.attention_examples}: a count >= 0")
  run = load_run(fl.run_dir, fl.checkpoint, data_dir=fl.data_dir)
  if not attention.supports(run.model):
    raise ValueError(f"--attention_examples: a {run.cfg.model.name} run does not expose its "
                     "attention weights (aden runs do: ADAPT Fig. 6)")
  for split in _splits(fl):
    reader = runs.reader(run.cfg, split, training=False, info=run.info)
    batch = next(iter(reader.dataset(fl.attention_examples)), None)
    if batch is None:
      raise ValueError(f"split {split!r} of {run.cfg.data.data_dir} has no impressions")
    studies = attention.case_studies(run.model, batch, run.store, fl.attention_examples)
    for i, study in enumerate(studies):
      print(f"### {split} example {i}\n\n{attention.to_markdown(study)}")
    logdir = attention.write_summaries(os.path.join(fl.run_dir, "logs", "attention", split),
                                       split, studies)
    print(f"tfrec.evaluate: wrote {len(studies)} attention heat maps to {logdir} "
          f"(tensorboard --logdir {os.path.join(fl.run_dir, 'logs')})", flush=True)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fl = FLAGS
  if not fl.run_dir:
    sys.exit("tfrec.evaluate: missing --run_dir (the run directory written by tfrec.train; "
             "or pass the training --flagfile)")
  try:
    if fl.dual_matching or fl.nearest_to:
      _evaluate_matching(fl)
      return
    if fl.attention_examples:
      _attention_case_studies(fl)
      return
    if _is_retrieval_run(fl.run_dir):
      _evaluate_retrieval(fl)
      return
    if fl.protocol == retrieval.FULL:
      raise ValueError("--protocol=full ranks the whole catalogue for retrieval runs; a "
                       "ranking run takes semi, adapt, couple, sasrec or none")
    run = load_run(fl.run_dir, fl.checkpoint, data_dir=fl.data_dir)
    _check_model_flags(fl, run.cfg)
    splits = _splits(fl)
    for ext, template in (("json", fl.output_json), ("md", fl.output_md)):
      if len(splits) > 1 and template and "{split}" not in template:
        raise ValueError(f"--output_{ext}={template} is one file for {len(splits)} splits: "
                         "put {split} in it")
    for split in splits:
      result = evaluate_split(run, split, protocol=fl.protocol,
                              gauc_reduction=fl.gauc_reduction, pool=fl.negative_pool,
                              seed=fl.eval_seed, max_examples=fl.max_examples,
                              batch_size=fl.batch_size,
                              topk_ks=[int(k) for k in fl.topk])
      paths = [output_path(t, fl.run_dir, split, fl.checkpoint, fl.protocol, fl.gauc_reduction,
                           ext) for t, ext in ((fl.output_json, "json"), (fl.output_md, "md"))]
      write_result(result, *paths)
      print(to_markdown(result))
      print(f"tfrec.evaluate: wrote {paths[0]} and {paths[1]}", flush=True)
  except Exception as e:  # noqa: BLE001  (bad input: one line; anything else: a bug)
    if cli.is_expected(e):
      cli.fail("tfrec.evaluate", e)
    raise


def run() -> None:
  cli.run(main, "tfrec.evaluate", define_flags)


if __name__ == "__main__":
  run()
