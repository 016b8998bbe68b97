"""Statistics of a converted Amazon dataset beside COUPLE's Tables 2 and 3, written to
DIR/stats.md by `python -m tfrec.datasets.amazon`."""

from __future__ import annotations

from tfrec.datasets import cold_start
from tfrec.datasets.amazon.conversion import Prepared

# COUPLE Table 2 (#users, #items, #tags, #interactions) of its Amazon domains.
PAPER_TABLE2 = {"Books": (1_672_201, 1_677_035, 555_685, 11_637_960),
                "Movies_and_TV": (1_080_338, 154_451, 73_430, 2_561_003)}


def statistics(p: Prepared, seconds: float = 0.0) -> str:
  """Markdown: raw files, the kept domains beside Table 2, the split beside Table 3, every
  count of what was dropped."""
  raw = p.info.extra
  domains = (raw["source"], raw["target"])
  lines = [f"# Amazon reviews, {domains[0]} -> {domains[1]}, in COUPLE's cold-start protocol",
           "", "| raw file figures | " + " | ".join(domains) + " |", "|---|---:|---:|"]
  for k in p.raw_counts[0]:
    lines.append(f"| {k} | {p.raw_counts[0][k]:,} | {p.raw_counts[1][k]:,} |")
  c = p.config
  lines += ["", f"Kept: ratings > {c.positive_above:g}, users with a positive in both domains"
            + (f", {c.kcore}-core" if c.kcore > 1 else " (no k-core)")
            + f" ({p.rounds} filter pass(es)).", "",
            "| domain | users | items | tags | interactions | COUPLE Table 2 (users / items / "
            "tags / interactions) |", "|---|---:|---:|---:|---:|---|"]
  for name, k in zip(domains, p.kept):
    paper = PAPER_TABLE2.get(name)
    ref = " / ".join(f"{x:,}" for x in paper) if paper else "-"
    lines.append(f"| {name} | {k['users']:,} | {k['items']:,} | {k['tags']:,} | "
                 f"{k['interactions']:,} | {ref} |")
  lines += ["", f"Rule: {cold_start.rule(p.split)}.", ""]
  lines += cold_start.statistics_lines(p.split, paper_row="Amazon")
  lines += ["", "Item features (tags, title tokens, metadata):"]
  lines += [f"- {k}: {v:,}" for k, v in p.dropped.items()]
  lines += ["", f"Vocabularies: {p.info.num_categories:,} categories, {p.info.num_tags:,} tags, "
            f"{p.info.num_tokens:,} title tokens."]
  if seconds:
    lines += ["", f"Converted in {seconds:.1f} s."]
  return "\n".join(lines) + "\n"
