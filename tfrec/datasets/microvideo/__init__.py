"""MicroVideo-1.7M (THACIL, MM 2018 §4.1) in the tfrec contract (`tfrec.data.schema`).

    python -m tfrec.datasets.microvideo --raw DIR --out DIR [--valid_share=0.1]
        [--max_seq_len=160] [--num_categories=512] [--visual_dim=512] [--num_shards=16]

reads the public layout (`raw`: train_data.csv, test_data.csv with rows
user,item,cate,label,timestamp, and the train / test cover feature matrices), writes DIR with
the layout of the other converters (dataset.json, items.npz, ranking/<split> shard sets checked
record by record by `ShardedWriter`, raw_ids.npz) and prints the statistics (DIR/stats.md).

The data (12,737,619 interactions of 10,986 users on 1,704,880 micro-videos) is split by ITEM in
the release (§4.1: "we divide the micro-videos into two disjoint sets"): the test items are an
item cold-start set, with their own feature matrix and their own index space (`raw`).

Items: ids 1..N_train are the train items referenced by train_data.csv (ascending feature row),
N_train + 1..N are the test items referenced by test_data.csv; feature rows never referenced are
dropped and counted (Table 1 counts 984,983 + 719,897, i.e. the feature matrices' rows).
domain = target (1) for every item (one domain: no source); category = raw cate + 1
(1..512); visual = the 512-d cover feature; no tags, title or kind; cold = 1 exactly for the
test items. raw_ids.npz maps each id back: "source_file" (0 train, 1 test; -1 padding) and
"raw_row".

Users: raw ids (0..10,985), no user features (zeros, vocabulary 1), one scenario (0).

Records (ranking only; one per CSV row, label = the row's click):
  train      train_data.csv rows before the user's validation cut V_u;
  valid      the latest `valid_share` (10%, rounded half up) of each user's train_data.csv
             rows by time: t >= V_u, equal timestamps never straddle the cut; a user with
             fewer than 5 rows has none. Never from test_data.csv;
  test_cold  every test_data.csv row: the item cold-start test (THACIL's test set). Named
             *cold* so that evaluation picks the cold candidate pool for it
             (`evaluation.sampled.negative_pool`: a split whose name contains "cold" draws
             negatives among the cold items, the other splits among the warm ones), and so that
             the name says what it is; there is no warm test split. Evaluate with
             `--splits=test_cold` (the default split "test" does not exist here).
History (target_item_ids / target_timestamps): the user's clicks (label 1) in train_data.csv
strictly before the row's timestamp, newest `max_seq_len` = 160 (§4.3: n = 160; dataset.json
max_seq_len), oldest first; valid and test rows see every earlier train_data.csv click, of
either period. It never holds the row's own item (unless clicked earlier), a later click, or a
test item (test items are in no train_data.csv row). source_item_ids is empty: the contract
allows it (`RANKING.nonempty_any` needs one of the two histories), so a row without any
earlier click has no history at all and is skipped and counted in stats.md.

Where this differs from the public code (Ocxs/THACIL `data_loader`): it gives every row, train
and test, the user's WHOLE train click list (sorted by time, a random 160 kept when longer):
clicks after the row's time, and for a train click the row's own item. The contract forbids
histories later than the event, so here they stop strictly before it and keep the newest 160
(the paper's §4.3 "we just preserve as much as 160 items"). Its training draws negatives per
epoch at a ratio to positives; here every row is a record and the trainer decides.

Timestamps are kept as given ("processed so that the absolute time is unknown, but the
sequential order is preserved", §4.1), shifted by the negative minimum if any is negative
(dataset.json extra timestamp_offset).

Sizes on the full data: the item store holds 1.7M x 512 float32 (3.5 GB in memory and in
items.npz); every record is checked by `ShardedWriter`, so writing 12.7M records takes a while.
Reference gAUC for users with the data (BARS MicroVideo1.7M_x1, issue 13): DIN 0.6883, DIEN
0.6867, BST 0.6854; THACIL's released checkpoint is named model-0.6844 (`stats.BARS_GAUC`).
"""

from __future__ import annotations

from tfrec.data.info import DatasetInfo
from tfrec.datasets import _convert
from tfrec.datasets.microvideo.conversion import (SPLITS, ConvertConfig, Prepared, num_records,
                                                  prepare, records, write)
from tfrec.datasets.microvideo.raw import RawMicroVideo, load_raw
from tfrec.datasets.microvideo.stats import BARS_GAUC, statistics


def convert(raw: RawMicroVideo, out_dir: str, config: ConvertConfig = ConvertConfig(),
            num_shards: int = 16, verbose: bool = True) -> DatasetInfo:
  """Converts raw MicroVideo-1.7M into a tfrec dataset directory (module docstring).

  Args:
    raw: from `load_raw(DIR)`.
    out_dir: output directory (created; old dataset files in it are replaced).
    config: the conversion choices.
    num_shards: shards per split (shard = user id % num_shards).
    verbose: print the statistics.

  Returns:
    the dataset's `DatasetInfo`; the statistics are also in out_dir/stats.md.
  """
  return _convert.run(prepare, write, statistics, raw, config, out_dir, num_shards, verbose)


__all__ = ["BARS_GAUC", "SPLITS", "ConvertConfig", "Prepared", "RawMicroVideo", "convert",
           "load_raw", "num_records", "prepare", "records", "statistics", "write"]
