"""The tail every real-data converter shares: prepare, write the records, write `stats.md`
(atomically), print the statistics."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from tfrec.data.info import DatasetInfo


def run(prepare: Callable[[Any, Any], Any], write: Callable[[Any, str, int], None],
        statistics: Callable[[Any, float], str], raw: Any, config: Any, out_dir: str,
        num_shards: int, verbose: bool) -> DatasetInfo:
  """`prepare(raw, config)` -> `write(prepared, out_dir, num_shards)` -> out_dir/stats.md =
  `statistics(prepared, seconds)`, printed when `verbose`; returns `prepared.info`."""
  begin = time.perf_counter()
  prepared = prepare(raw, config)
  write(prepared, out_dir, num_shards)
  text = statistics(prepared, time.perf_counter() - begin)
  path = os.path.join(out_dir, "stats.md")
  with open(path + ".incomplete", "w") as f:
    f.write(text)
  os.replace(path + ".incomplete", path)
  if verbose:
    print(text, flush=True)
  return prepared.info
