"""The results of `tfrec.evaluate` as files: a markdown table that states the protocol the
numbers were measured under (`to_markdown`), and JSON (`write_result`, NaN as null, each file
written atomically) at `output_path`.

Default paths: `<run_dir>/eval/<split>.json` and `.md`; a template (`--output_json`,
`--output_md`) may use the placeholders {split}, {checkpoint}, {protocol} and {reduction}.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional

import numpy as np


def _fmt(x: Any) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "n/a"
  return f"{x:.4f}" if isinstance(x, float) else str(x)


def to_markdown(result: Mapping[str, Any]) -> str:
  """The result as a markdown table, preceded by the protocol it was measured under: the run,
  the split it validated on (a WARNING line when that is the evaluated split or a test split),
  which examples were evaluated, the ranking protocol and GAUC's reduction."""
  c, p, g = result["counts"], result["protocol"], result["gauc"]
  title = "tfrec.evaluate"
  if "model" in result:
    title += f": {result['model']['name']} on {result['dataset']['name']}"
  if "split" in result:
    title += f", split {result['split']}"
  setting = []
  if "run_dir" in result:
    setting.append(("run", f"`{result['run_dir']}`, checkpoint {result['checkpoint']['which']}"
                           f" (`{result['checkpoint']['path']}`)"))
    ds = result["dataset"]
    trained = (f"; the run trained on `{ds['run_data_dir']}`" if ds.get("run_data_dir")
               else "")
    setting.append(("dataset", f"`{ds['dir']}` ({ds['name']}){trained}"))
  v = result.get("validation")
  if v is not None:
    what = (f"`{v['split']}` (early stopping and the best checkpoint)" if v["split"]
            else "none (no validation split while training)")
    setting.append(("validated on", f"{what}; allow_test_validation "
                                    f"{'set' if v['allow_test_validation'] else 'not set'}"))
  sampling = result.get("sampling") or {}
  sampled = ""
  if sampling.get("seed") is not None:
    sampled = (f" ({sampling['users']:,} of {sampling['split_users']:,} users sampled with seed "
               f"{sampling['seed']}: whole users, at most {sampling['max_examples']:,} examples; "
               f"the split has {sampling['split_examples']:,})")
  setting.append(("examples", f"{c['examples']:,} examples, {c['users']:,} users, "
                              f"{c['positives']:,} positives{sampled}"))
  if p["ranking"] == "sampled":
    setting.append(("ranking", f"{p['description']} (protocol {p['name']}, seed {p['seed']}); "
                               f"{c['ranked_positives']:,} positives ranked"))
    setting.append(("negatives", f"pool: {p['negative_pool']}, {p['negative_pool_size']:,} "
                                 f"items; excluded: {p['excluded']}; popularity: "
                                 f"{p['popularity']}; ties: {p['ties']}"))
  else:
    setting.append(("ranking", p["description"]))
  setting.append(("GAUC", f"{g['definition']}; reduction `{g['reduction']}`; {g['users']:,} "
                          f"users counted, {g['users_skipped']:,} with one class skipped"))
  if result.get("topk"):
    top = result["topk"]
    setting.append(("top-K", f"{top['definition']}; {top['users']:,} users, "
                             f"{top['users_skipped']:,} without a click skipped"))
  lines = [f"### {title}", ""]
  if v is not None and v.get("warning"):
    lines += [f"**WARNING: {v['warning']}.**", ""]
  lines += ["| setting | value |", "|---|---|"]
  lines += [f"| {k} | {v} |" for k, v in setting]
  lines += ["", "| metric | model | oracle (ceiling) |", "|---|---:|---:|"]
  m, o = result["metrics"], result["oracle"]
  names = [("auc", "AUC"), ("gauc", f"GAUC ({g['reduction']})")]
  names += [(f"{x}@{k}", f"{x.upper()}@{k}") for k in p.get("ks", []) for x in ("hr", "ndcg")]
  top = result.get("topk")
  if top:
    names += [(f"topk_{x}@{k}", f"top-{k} {label}") for k in top["ks"]
              for x, label in (("precision", "precision"), ("recall", "recall"),
                               ("f_score", "F-score"), ("ndcg", "NDCG"))]
  lines += [f"| {label} | {_fmt(m.get(key))} | {_fmt(o.get(key))} |" for key, label in names]
  lines += ["", f"Oracle AUC/GAUC: {o['pointwise']}.", f"Oracle HR/NDCG: {o['ranking']}."]
  checks = result.get("checks") or {}
  if checks:
    lines.append(f"Checks: encode-once max |score - logit| = "
                 f"{checks['encode_once_max_abs_diff']:.2e}; positives outside the pool: "
                 f"{checks['positives_outside_pool']}; negatives sha256 "
                 f"{checks['negatives_sha256'][:16]}.")
  return "\n".join(lines) + "\n"


def _json_ready(x: Any) -> Any:
  """NaN -> None (JSON has no NaN), numpy scalars -> Python; drops the "arrays" entry."""
  if isinstance(x, dict):
    return {k: _json_ready(v) for k, v in x.items() if k != "arrays"}
  if isinstance(x, (list, tuple)):
    return [_json_ready(v) for v in x]
  if isinstance(x, np.generic):
    x = x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def _write_atomic(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".incomplete"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_result(result: Mapping[str, Any], json_path: Optional[str] = None,
                 md_path: Optional[str] = None, markdown=None) -> None:
  """Writes the result as JSON (NaN as null) and/or markdown (`markdown(result)`, default the
  ranking table `to_markdown`); each file atomically."""
  if json_path:
    _write_atomic(json_path, json.dumps(_json_ready(result), indent=2, sort_keys=True) + "\n")
  if md_path:
    _write_atomic(md_path, (markdown or to_markdown)(result))


def output_path(template: Optional[str], run_dir: str, split: str, checkpoint: str,
                protocol: str, reduction: str, ext: str) -> str:
  """`template` with {split} {checkpoint} {protocol} {reduction} filled in, or the default
  `<run_dir>/eval/<split>.<ext>`. {checkpoint} is best, final, or a prefix's last component."""
  if not template:
    return os.path.join(run_dir, "eval", f"{split}.{ext}")
  name = os.path.basename(checkpoint)  # "best" and "final" are their own basename
  return template.format(split=split, checkpoint=name, protocol=protocol, reduction=reduction)
