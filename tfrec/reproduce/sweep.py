"""Regime sweeps: a paper's claim measured across the values of one knob of the synthetic world.

    python -m tfrec.reproduce --paper=semi --sweep=transfer=0.1,0.4,0.7,0.9 \\
        --claims="Cross-BST > BST (target only)"

Where the synthetic world would decide a claim by construction, the honest result is the regime
in which it holds. For each value v of the knob FIELD (a `SyntheticConfig` field):
  1. the world is generated with FIELD = v on the scale's preset, once (cached: a directory
     whose dataset.json records exactly that configuration is reused, any other is rebuilt);
  2. the rows the chosen claims compare are trained and evaluated by the ordinary harness
     (`harness.Runner`: LR grid and early stopping on `valid`, cached by resolved
     configuration), `seeds` times;
  3. for each claim and metric: the difference mean(a) - mean(b) over seeds, its 95% interval
     from the paired bootstrap over users (`bootstrap.UserBootstrap`), the one-sided Welch p
     over seeds and the verdict (`stats.verdict`: holds only when p < 0.05).
The report (`<results_dir>/<paper>_synthetic_sweep_<field>.md`) has one table per claim (a row
per knob value) and says in which regimes the claim holds, and a PNG per claim and metric draws
the difference with its interval against the knob (the regime map).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.reproduce import bootstrap, figures, harness, report, stats


@dataclasses.dataclass(frozen=True)
class Claim:
  """An ordering a paper states: row `a` > row `b`."""

  text: str
  a: str
  b: str


# What `run_sweep` keeps of one world for the report: its rows and their results.
Selection = Tuple[Sequence[Any], Mapping[str, List[Dict[str, Any]]]]


@dataclasses.dataclass(frozen=True)
class Point:
  """One claim and metric at one knob value."""

  value: Any
  mean_a: float
  mean_b: float
  difference: bootstrap.Interval
  p: float
  verdict: str


def parse(spec: str, preset: str) -> Tuple[str, List[Any]]:
  """"FIELD=v1,v2,..." -> (field, values typed as the `SyntheticConfig` field).

  Raises:
    ValueError: not FIELD=values, an unknown field (listing the knobs), or a value of the
      wrong type.
  """
  from tfrec.datasets import synthetic
  from tfrec.datasets.synthetic import world
  field, sep, text = spec.partition("=")
  field = field.strip()
  values = [v.strip() for v in text.split(",") if v.strip()]
  if not sep or not field or not values:
    raise ValueError(f"--sweep={spec}: expected FIELD=v1,v2,... (e.g. transfer=0.2,0.7)")
  config = synthetic.get_config(preset)
  fields = {f.name: f for f in dataclasses.fields(config)}
  knobs = sorted(n for n in fields if n not in ("name", "seed"))
  if field not in knobs:
    raise ValueError(f"--sweep: {field!r} is not a knob of the synthetic world; knobs: "
                     f"{', '.join(knobs)}")
  out = []
  for v in values:
    try:
      out.append(world.parse_assignments([f"{field}={v}"])[field])
    except ValueError as e:
      raise ValueError(f"--sweep: {e}") from None
    if isinstance(out[-1], tuple):
      raise ValueError(f"--sweep: {field} is not a scalar knob (sweeps take scalar knobs)")
  if len(set(out)) != len(out):
    raise ValueError(f"--sweep={spec}: repeated values")
  return field, out


def world_dir(base: str, preset: str, field: str, value: Any) -> str:
  return os.path.join(base, f"syn-{preset}-{field}={value}")


def ensure_world(data_dir: str, preset: str, field: str, value: Any,
                 overrides: Mapping[str, Any] = ()) -> str:
  """Generates the preset (with `overrides`, e.g. a scale's smaller world) with `field` =
  `value` in `data_dir` unless it holds exactly that world already; returns `data_dir`."""
  from tfrec.datasets import synthetic
  config = synthetic.get_config(preset, **dict(dict(overrides), **{field: value}))
  info_path = os.path.join(data_dir, "dataset.json")
  if os.path.exists(info_path):
    with open(info_path) as f:
      held = json.load(f).get("extra", {}).get("config")
    if _same_world(held, config):
      return data_dir
    shutil.rmtree(data_dir)
  synthetic.generate(config, data_dir, verbose=False)
  return data_dir


def _same_world(held: Optional[Mapping[str, Any]], config: Any) -> bool:
  """Whether a dataset.json's generator config `held` describes the world `config`. Fields
  `held` lacks (knobs added after it was written) take their defaults, which leave the world
  as it was (`SyntheticConfig`'s contract), so an older world is reused, not rewritten (a
  rewrite would change dataset.json and so every cached run's key)."""
  from tfrec.datasets.synthetic import world
  if not isinstance(held, Mapping):
    return False
  try:
    filled = world.config_from_dict(held)
  except (TypeError, ValueError):
    return False
  return filled == config


SCENARIO_METRIC = " in scenario "


def scenario_metric(metric: str) -> Tuple[str, Optional[int]]:
  """"hr@20 in scenario 1" -> ("hr@20", 1) (a retrieval metric over one scenario's examples,
  M5's regime map); "hr@20" -> ("hr@20", None)."""
  base, sep, scenario = metric.partition(SCENARIO_METRIC)
  return (base, int(scenario)) if sep else (metric, None)


def metric_label(metric: str) -> str:
  base, scenario = scenario_metric(metric)
  return base.upper() + ("" if scenario is None else f" in scenario {scenario}")


def measure(results: Mapping[str, List[Dict[str, Any]]],
            arrays: Mapping[str, List[Mapping[str, np.ndarray]]], claim: Claim, metric: str,
            value: Any) -> Point:
  """One `Point`: means over seeds, the paired bootstrap CI of the difference, Welch, verdict.
  A metric "<m> in scenario <id>" is <m> over that scenario's examples (`scenario_metric`)."""
  metric, scenario = scenario_metric(metric)
  if scenario is not None:
    from tfrec.reproduce import tables
    name = f"scenario {scenario}"
    results = {r: [{**x, "metrics": x.get("scenarios", {}).get(name, {}).get("metrics", {})}
                   for x in results[r]] for r in (claim.a, claim.b)}
    arrays = tables.subset_arrays({r: arrays[r] for r in (claim.a, claim.b)}, "scenario_id",
                                  scenario) or {}
    if claim.a not in arrays or claim.b not in arrays:
      raise ValueError(f"{claim.text}: no examples of {name} in the evaluated split")
  va = harness.values(results[claim.a], metric)
  vb = harness.values(results[claim.b], metric)
  # HR@K / NDCG@K bootstrap at their own K (COUPLE's claims are at K = 10, its first K is 5).
  k = (int(metric.split("@")[1]) if metric.startswith(("hr@", "ndcg@"))
       else int(results[claim.a][0]["k"]))
  boot = bootstrap.UserBootstrap({claim.a: arrays[claim.a], claim.b: arrays[claim.b]}, k)
  words, p = stats.verdict(va, vb)
  return Point(value, float(np.mean(va)), float(np.mean(vb)),
               boot.difference(claim.a, claim.b, metric), p, words)


def regimes(points: Sequence[Point]) -> str:
  """Where the claim holds, is not significant, does not hold, as one sentence."""
  parts = []
  for words in (stats.HOLDS, stats.NOT_SIGNIFICANT, stats.DOES_NOT_HOLD):
    at = [str(p.value) for p in points if p.verdict == words]
    if at:
      parts.append(f"{words} at {', '.join(at)}")
  if len({p.verdict for p in points}) == 1:
    return f"The claim {parts[0]}: the same verdict in every regime swept."
  return "The verdict depends on the regime: " + "; ".join(parts) + "."


def write_report(path: str, paper: str, field: str, values: Sequence[Any], preset: str,
                 seeds: int, points: Mapping[Tuple[str, str], List[Point]],
                 metrics: Sequence[str], command: str = "",
                 selection: Optional[Mapping[Any, Selection]] = None) -> str:
  """The sweep's markdown report and one regime-map PNG per (claim, metric) beside it.
  `selection`: per knob value, the rows and results `run_sweep` collected; the report then
  names the validation monitor and lists each run's learning rate and stopping epoch (a
  claim can turn on where early stopping ends a row)."""
  from tfrec.reproduce import tables
  stem = os.path.splitext(path)[0]
  lines = [f"# {paper.upper()} claims across `{field}` (synthetic preset {preset})", ""]
  if command:
    lines += [f"Command: `{command}`", ""]
  monitor = "its validation monitor"
  if selection:
    first = next(r for rows, results in selection.values() for row in rows
                 for r in results[row.name])
    name = (first.get("best") or {}).get("monitor") or "val_loss"
    monitor = (tables.retrieval_monitor(first, "the validation loss")
               if "@" in name or name == "val_loss" else f"`{name}`")
  lines += [f"Knob `{field}` = {', '.join(str(v) for v in values)}; {seeds} seeds per row; every "
            f"run selects its epochs (early stopping on {monitor}) on `valid`, and its learning "
            "rate on `valid` from the grid of `--lr_grid` (one rate: fixed). Difference = mean over "
            "seeds of row a minus row b; its 95% interval is the paired bootstrap "
            "over users; p is the one-sided Welch t-test over seeds; a claim **holds** only "
            "when p < 0.05, otherwise **same direction, not significant** when the mean "
            "difference has the paper's sign, else **does not hold**.", ""]
  for (text, metric), pts in points.items():
    lines += [f"## {text} ({metric_label(metric)})", "", regimes(pts), ""]
    rows = [[str(p.value), f"{p.mean_a:.4f}", f"{p.mean_b:.4f}",
             f"{p.difference.estimate:+.4f} {p.difference.format()}",
             "n/a" if not np.isfinite(p.p) else f"{p.p:.3g}", p.verdict] for p in pts]
    lines += [report.markdown_table([field, "row a", "row b", "difference [95% CI]",
                                     "p (one-sided)", "verdict"], rows), ""]
    png = f"{stem}_{harness.slugify(text)}_{harness.slugify(metric)}.png"
    figures.interval_plot(png, [p.value for p in pts],
                          [p.difference.estimate for p in pts],
                          [p.difference.low for p in pts], [p.difference.high for p in pts],
                          xlabel=field, ylabel=f"{metric_label(metric)} difference (a - b)",
                          title=f"{text}: regime map over {field}")
    lines += [f"![{text}, {metric}]({os.path.basename(png)})", ""]
  for value, (rows, results) in (selection or {}).items():
    section = tables.selection_section(rows, results)
    lines += [f"{section[0]} at {field} = {value}"] + section[1:]
  notes = stem + ".notes.md"
  if os.path.exists(notes):
    with open(notes) as f:
      lines += ["## Analysis", "", f.read().strip(), ""]
  report.atomic_write_text(path, "\n".join(lines))
  return path


def run_sweep(field: str, values: Sequence[Any], claims: Sequence[Claim], rows: Sequence[Any],
              preset: str, data_base: str, settings: harness.Settings,
              metrics: Sequence[str], overrides: Mapping[str, Any] = (),
              world_name: Optional[str] = None,
              prepare: Optional[Callable[[str], None]] = None,
              worker: Tuple[int, int] = (0, 1),
              selection: Optional[Dict[Any, Selection]] = None
              ) -> Dict[Tuple[str, str], List[Point]]:
  """Trains and evaluates `rows` in the world of every value (module docstring); returns
  (claim text, metric) -> one `Point` per value. `overrides`: fields set on the preset in
  every world (a scale's world), `world_name` names its directories (default: the preset),
  `prepare(data_dir)` adds what the paper's rows need to each world (SEMI's item vectors).

  `worker` = (i, n > 1): n processes share the sweep (`--workers`): each world is generated
  and prepared once, under a file lock, and each world's runs are shared as
  `harness.Runner.run_all` shares them; a helper (i > 0) trains its share and returns {}.
  `selection`, when given, receives each value's (rows, results) for `write_report`."""
  index, count = worker
  points: Dict[Tuple[str, str], List[Point]] = {(c.text, m): [] for c in claims for m in metrics}
  for value in values:
    data_dir = world_dir(data_base, world_name or preset, field, value)
    with harness.run_lock(data_dir, "world"):  # one process generates, the others wait
      ensure_world(data_dir, preset, field, value, overrides)
      if prepare is not None:
        prepare(data_dir)
    runner = harness.Runner(dataclasses.replace(
        settings, data_dir=data_dir,
        work_dir=os.path.join(settings.work_dir, f"{field}={value}")), worker=(index, count))
    if index:
      runner.run_all(rows, own_only=True)
      continue
    results = runner.run_all(rows)
    if selection is not None:
      selection[value] = (rows, results)
    arrays = {r.name: [runner.arrays(r, s) for s in range(settings.seeds)] for r in rows}
    for c in claims:
      for m in metrics:
        points[c.text, m].append(measure(results, arrays, c, m, value))
  return {} if index else points


def chosen_claims(all_claims: Sequence[Tuple[str, str, str]], names: Optional[Sequence[str]]
                  ) -> List[Claim]:
  """The paper's claims named in `names` (all of them when empty).

  Raises:
    ValueError: a name that is not one of the paper's claims (listing them).
  """
  claims = [Claim(*c) for c in all_claims]
  if not names:
    return claims
  known = {c.text: c for c in claims}
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f"--claims: unknown {unknown}; the paper's claims: "
                     f"{'; '.join(known)}")
  return [known[n] for n in names]
