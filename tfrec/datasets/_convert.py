"""What every real-data converter shares: moving a staged dataset into place with dataset.json
last (`publish`, `staged`), and the tail prepare -> write -> `stats.md` (atomically) -> print (`run`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from typing import Any, Callable, Iterator

from tfrec.data.info import INFO_FILE, DatasetInfo


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


def publish(stage: str, out_dir: str) -> None:
  """Moves the staged dataset into out_dir, replacing old outputs; dataset.json goes last."""
  info_path = os.path.join(out_dir, INFO_FILE)
  if os.path.exists(info_path):
    os.remove(info_path)  # The directory reads as incomplete until the new one lands.
  for name in sorted(os.listdir(stage)):
    if name == INFO_FILE:
      continue
    dst = os.path.join(out_dir, name)
    if os.path.isdir(dst):
      shutil.rmtree(dst)
    elif os.path.exists(dst):
      os.remove(dst)
    os.replace(os.path.join(stage, name), dst)
  os.replace(os.path.join(stage, INFO_FILE), info_path)


@contextlib.contextmanager
def staged(out_dir: str, store: Any, info: DatasetInfo) -> Iterator[str]:
  """Yields a staging directory under `out_dir` holding the validated item store; on a clean
  exit writes `info` and `publish`es (dataset.json last); the stage is always removed."""
  os.makedirs(out_dir, exist_ok=True)
  stage = os.path.join(out_dir, ".convert-tmp")
  shutil.rmtree(stage, ignore_errors=True)
  try:
    store.validate(info=info)
    store.save(stage)
    yield stage
    info.save(stage)
    publish(stage, out_dir)
  finally:
    shutil.rmtree(stage, ignore_errors=True)
