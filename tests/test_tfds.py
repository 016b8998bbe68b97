"""`tfds.load('tfrec_synthetic/<preset>_<kind>')` yields the generator's records unchanged."""

import numpy as np
import tensorflow_datasets as tfds

from tfrec.data import schema
from tfrec.datasets import synthetic
import tfrec.datasets.tfds_builders as tb  # noqa: F401  (registers the builders)


def test_tfds_load_matches_generator(tmp_path):
  ds, info = tfds.load("tfrec_synthetic/tiny_ranking", split="test", data_dir=str(tmp_path),
                       with_info=True)
  world = synthetic.build_world(synthetic.get_config("tiny"))
  expected = {}
  for user in range(world.config.num_users):
    for i, rec in enumerate(synthetic.user_records(world, user)["ranking"]["test"]):
      expected[(user, rec["timestamp"], rec["item_id"])] = rec
  got = list(tfds.as_numpy(ds))
  assert len(got) == len(expected) == info.splits["test"].num_examples > 0
  for ex in got[:50]:
    rec = expected[(int(ex["user_id"]), int(ex["timestamp"]), int(ex["item_id"]))]
    for f in schema.RANKING.fields:
      np.testing.assert_allclose(ex[f.name], np.asarray(rec.get(f.name, f.default)),
                                 rtol=1e-6, err_msg=f.name)
  assert set(info.features.keys()) == {f.name for f in schema.RANKING.fields}
  assert info.metadata["dataset_info"]["num_items"] == world.store.num_items
  # The valid split (day 6 of 8, the day before the test day) is exposed too.
  assert set(info.splits) == {"train", "valid", "test", "test_cold"}
  valid = list(tfds.as_numpy(tfds.load("tfrec_synthetic/tiny_ranking", split="valid",
                                       data_dir=str(tmp_path))))
  want = sorted((user, rec["timestamp"], rec["item_id"]) for user in range(world.config.num_users)
                for rec in synthetic.user_records(world, user)["ranking"]["valid"])
  got = sorted((int(ex["user_id"]), int(ex["timestamp"]), int(ex["item_id"])) for ex in valid)
  assert got == want and len(got) == info.splits["valid"].num_examples > 0
  assert all(6 * synthetic.DAY_S <= t < 7 * synthetic.DAY_S for _, t, _ in got)


def test_item_store_helper_matches_world():
  store = tb.item_store("tiny")
  assert store.num_items == synthetic.dataset_info(synthetic.get_config("tiny")).num_items
  store.validate()


def test_tfds_dual_pairs_follow_the_generators_story_split(tmp_path):
  from tfrec.datasets.synthetic import items
  cfg = synthetic.get_config("tiny")
  world = synthetic.build_world(cfg, with_visual=False)
  want = items.split_dual_pairs(cfg, synthetic.dual_pair_records(world), world.num_items)
  for split in ("train", "test"):
    ds = tfds.load("tfrec_synthetic/tiny_dual_pair", split=split, data_dir=str(tmp_path))
    got = sorted((int(x["target_item_id"]), int(x["source_item_id"])) for x in tfds.as_numpy(ds))
    assert got == sorted((p["target_item_id"], p["source_item_id"]) for p in want[split])
    assert got
