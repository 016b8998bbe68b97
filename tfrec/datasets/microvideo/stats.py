"""Statistics of a converted MicroVideo-1.7M dataset beside THACIL's Table 1, written to
DIR/stats.md by `python -m tfrec.datasets.microvideo`."""

from __future__ import annotations

import numpy as np

from tfrec.datasets.microvideo.conversion import SPLITS, Prepared

# THACIL Table 1 (interactions, micro-videos, users) and the anchor figures for users with the
# data: BARS MicroVideo1.7M_x1 gAUC (issue 13) and the name of THACIL's released checkpoint.
PAPER_TABLE1 = {"train": (8_970_310, 984_983, 10_986), "test": (3_767_309, 719_897, 10_986)}
BARS_GAUC = {"DIN": 0.6883, "DIEN": 0.6867, "BST": 0.6854,
             "THACIL (released checkpoint model-0.6844)": 0.6844}


def _avg(x) -> str:
  return f"{float(np.mean(x)):.2f}" if len(x) else "-"


def statistics(p: Prepared, seconds: float = 0.0) -> str:
  """Markdown: raw files beside Table 1, the written splits, skipped rows, the anchors."""
  raw = p.info.extra["raw"]
  store = p.store
  n_train_items = int((store.cold[1:] == 0).sum())
  n_test_items = int(store.cold[1:].sum())
  lines = ["# MicroVideo-1.7M (THACIL, MM 2018) in the tfrec contract", "",
           "| raw file | interactions | micro-videos | users | paper (Table 1) |",
           "|---|---|---|---|---|"]
  users_tr = len(np.unique(p.clicks["user"]))
  for name, rows, items in (("train_data.csv", raw["train_rows"], n_train_items),
                            ("test_data.csv", raw["test_rows"], n_test_items)):
    paper = PAPER_TABLE1["train" if name.startswith("train") else "test"]
    lines.append(f"| {name} | {rows:,} | {items:,} | {p.info.num_users:,} | "
                 f"{paper[0]:,} / {paper[1]:,} / {paper[2]:,} |")
  lines += ["", f"Users with a click in train_data.csv: {users_tr:,}. Feature rows never "
            f"referenced (dropped): train {p.unused_feature_rows[0]:,}, test "
            f"{p.unused_feature_rows[1]:,}. Timestamp offset: {p.timestamp_offset}.", "",
            "| ranking split | records | users | items | cold items | positive rate | "
            "avg history | histories at max_seq_len |", "|---|---|---|---|---|---|---|---|"]
  for split in SPLITS:
    r = p.rows[split]
    n = len(r["user"])
    length = r["hi"] - r["lo"]
    lines.append(
        f"| {split} | {n:,} | {len(np.unique(r['user'])):,} | {len(np.unique(r['item'])):,} | "
        f"{int(store.cold[np.unique(r['item'])].sum()):,} | "
        f"{float(r['label'].mean()) if n else 0:.3f} | {_avg(length)} | "
        f"{float((length == p.config.max_seq_len).mean()) if n else 0:.1%} |")
  lines += ["", "Skipped (no earlier click, so no history: the contract needs one):"]
  lines += [f"- {k}: {v:,}" for k, v in p.skipped.items()]
  lines += ["", "Reference gAUC on BARS MicroVideo1.7M_x1 (the anchor for a run on this data):",
            ""] + [f"- {k}: {v:.4f}" for k, v in BARS_GAUC.items()]
  if seconds:
    lines += ["", f"Converted in {seconds:.1f} s."]
  return "\n".join(lines) + "\n"
