"""Amazon reviews (McAuley et al., http://jmcauley.ucsd.edu/data/amazon/) as COUPLE's
cross-domain cold-start dataset (Cao et al., COUPLE §4.1: Books -> Movies and TV).

    python -m tfrec.datasets.amazon --raw DIR --out DIR [--source=Books
        --target=Movies_and_TV] [--columns=user,item] [--kcore=0] [--min_tag_count=2]
        [--min_token_count=1] [--max_len=100] [--valid] [--seed=0] [--num_shards=16]

reads the published per-category files (`raw`: ratings_<Category>.csv and meta_<Category>.json,
2014 or 2018 release, plain or .gz), writes DIR with the layout of the other converters
(dataset.json, items.npz, matching/<split> shard sets checked record by record by
`ShardedWriter`, seen_items/, vocab.json) and prints the statistics (DIR/stats.md, beside
COUPLE's Tables 2 and 3).

Events: every rating above 3 (`positive_above`; COUPLE: "review ratings over 3") is a positive
at its timestamp (unixReviewTime: whole days, so equal times are common). The event table is the
source file's rows then the target file's, each in file order: equal times keep that order (a
same-day source review counts as before a target one). A repeated (user, item) rating is
another event.
Users: those with a positive in both domains; with `kcore` > 1 users and items also need
>= kcore positives, the two rules repeated until nothing changes. Default: no k-core (COUPLE
names none). User ids 0.. in order of first appearance in the target file; no user features
(zeros, vocabularies of 1), one scenario.
Items: the items of kept positives, ids 1..N: source items first, then target, each in order of
first appearance in its file; an asin present in both files is two items (one per domain).
tags (<= 8, one vocabulary shared by the domains, COUPLE's item representation): "brand:<brand>"
then the category path entries from the most specific up (`conversion.item_tags`), kept when
carried by >= `min_tag_count` (2: a tag of one item transfers nothing) kept items; rarer ones
and those beyond 8 are dropped and counted. title = lowercased title words (<= 16, vocabulary of
the words in >= `min_token_count` titles, by frequency). category = the leaf of the item's first
category path ("(none)" without one). visual width 0, kind 0. Kept items without a metadata
line keep no tags and no title (counted). vocab.json names every category, tag, token, item
(asin) and user (reviewerID).
Split: `tfrec.datasets.cold_start.protocol` (test_cold = each user's last target positive, its
items `cold`; valid = the second-to-last once they are erased, its items erased from train; half
of the test users cold; empty histories dropped and counted): matching/{train,valid,test_cold}
and seen_items/{valid,test_cold}.npz; dataset.json max_seq_len = max(50, max_len).
"""

from __future__ import annotations

from tfrec.data.info import DatasetInfo
from tfrec.datasets import _convert
from tfrec.datasets.amazon.conversion import ConvertConfig, Prepared, prepare, write
from tfrec.datasets.amazon.raw import RawAmazon, load_raw
from tfrec.datasets.amazon.stats import PAPER_TABLE2, statistics


def convert(raw: RawAmazon, out_dir: str, config: ConvertConfig = ConvertConfig(),
            num_shards: int = 16, verbose: bool = True) -> DatasetInfo:
  """Converts raw Amazon files into a tfrec dataset directory (module docstring).

  Args:
    raw: from `load_raw(DIR, source, target)`.
    out_dir: output directory (created; old dataset files in it are replaced).
    config: the conversion choices.
    num_shards: shards per split (shard = user id % num_shards).
    verbose: print the statistics.

  Returns:
    the dataset's `DatasetInfo`; the statistics are also in out_dir/stats.md.
  """
  return _convert.run(prepare, write, statistics, raw, config, out_dir, num_shards, verbose)


__all__ = ["PAPER_TABLE2", "ConvertConfig", "Prepared", "RawAmazon", "convert", "load_raw",
           "prepare", "statistics", "write"]
