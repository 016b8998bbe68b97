"""tfrec.export: the serving SavedModel. `rank` (one user, N candidates, the user encoded once)
scores each candidate as the in-memory model's pointwise forward pass does, for every registered
model; `score` (= serving_default) is that forward pass; a fresh process without tfrec loads and
scores it; malformed requests fail naming the input; histories are truncated keeping the newest
events; the export is atomic and never overwrites by accident."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import NUM_ITEMS, VISUAL_DIM, tiny_info, tiny_store
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec import config as config_lib  # noqa: E402
from tfrec import serving as export_lib  # noqa: E402
from tfrec import runs  # noqa: E402
from tfrec.models import registry  # noqa: E402

DIM = 8
SEQ = 5  # the models' max_seq_len
HOUR = 3600
NOW = 10 * HOUR
# Built-in exportable ranking models (test modules may register their own; models that read
# inputs the `rank` signature does not carry, such as MF's user id, are EXPORTABLE = False).
NAMES = [n for n in registry.names("ranking")
         if registry.get(n).cls.__module__.startswith("tfrec.")
         and getattr(registry.get(n).cls, "EXPORTABLE", False)]
EXTRA = {"bst": dict(num_heads=2), "cross_bst": dict(num_heads=2),
         "aden": dict(num_heads=2, num_tokens=9)}

# One user: three source events, two target events (hours before NOW fall in different time
# blocks), scored against every item.
USER = {"timestamp": NOW,
        "source_item_ids": [1, 2, 3], "source_timestamps": [1 * HOUR, 2 * HOUR, 8 * HOUR],
        "target_item_ids": [6, 7], "target_timestamps": [3 * HOUR, 9 * HOUR]}
CANDIDATES = list(range(1, NUM_ITEMS + 1))


# ----------------------------------------------------------------------------- helpers


def small_store():
  """The conftest store with visual vectors scaled to O(1), so that logits stay O(1)."""
  store = tiny_store()
  store.visual = store.visual / 1000.0
  return store


def build(name, seed=0):
  keras.utils.set_random_seed(seed)
  return registry.build(name, num_items=NUM_ITEMS, dim=DIM, num_categories=4,
                        visual_dim=VISUAL_DIM, max_seq_len=SEQ, num_time_blocks=12,
                        mlp_units=(DIM,), **EXTRA.get(name, {})).build_and_fill(small_store())


def rank_request(model, user=USER, candidates=CANDIDATES, **overrides):
  """The `rank` inputs of `model` (its domains only) as int64 tensors."""
  req = {"timestamp": user["timestamp"], "candidate_item_ids": candidates}
  for d in model.domains:
    for f in ("item_ids", "timestamps"):
      req[f"{d}_{f}"] = user[f"{d}_{f}"]
  req.update(overrides)
  return {k: tf.constant(np.asarray(v, np.int64)) for k, v in req.items()}


def pointwise_features(model, user=USER, candidates=CANDIDATES, length=SEQ, masks=True):
  """The training layout: one row per candidate, histories right-padded to `length`."""
  n = len(candidates)
  feats = {"timestamp": np.full([n], user["timestamp"]), "item_id": np.asarray(candidates)}
  for d in model.domains:
    for f in ("item_ids", "timestamps"):
      v = np.asarray(user[f"{d}_{f}"][-length:] if length else [], np.int64)
      feats[f"{d}_{f}"] = np.tile(np.pad(v, (0, length - len(v))), [n, 1])
    if masks:
      feats[f"{d}_mask"] = feats[f"{d}_item_ids"] > 0
  return {k: tf.constant(v if v.dtype == bool else v.astype(np.int64)) for k, v in feats.items()}


def close(a, b, tol=1e-5):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


_CACHE = {}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """name -> (in-memory model, its SavedModel path, the SavedModel loaded in this process)."""

  def get(name):
    if name not in _CACHE:
      model = build(name)
      path = export_lib.export(model, str(tmp_path_factory.mktemp(name) / "1"))
      _CACHE[name] = (model, path, tf.saved_model.load(path))
    return _CACHE[name]

  yield get
  _CACHE.clear()


# ----------------------------------------------------------------------------- correctness


def test_saved_model_reads_items_from_its_precomputed_table(exported):
  """The SavedModel holds every item's encoding (`item_table`, computed at export) and serves
  from it: the item store's columns inside the loaded model no longer matter."""
  model, _, loaded = exported("cross_bst")
  close(loaded.item_table, model.item_encoder.encode_all())
  assert loaded.item_table.shape == [NUM_ITEMS + 1, model.dim]
  request = rank_request(model, USER)
  before = loaded.signatures["rank"](**request)["logits"].numpy()
  for v in loaded.model_variables:  # the item store's visual column inside the SavedModel
    if "item_visual" in v.name:
      v.assign(tf.zeros_like(v) + 123.0)
  close(loaded.signatures["rank"](**request)["logits"], before)
  # ... whereas the table itself is what the signature reads.
  loaded.item_table.assign(tf.zeros_like(loaded.item_table))
  assert not np.allclose(loaded.signatures["rank"](**request)["logits"], before)
  _CACHE.pop("cross_bst")  # the loaded copy was altered


@pytest.mark.parametrize("name", NAMES)
def test_rank_scores_each_candidate_as_the_pointwise_model_does(exported, name):
  """Encode once, score N == N independent forward passes; for a user with an empty history in
  one domain too. `score` (= serving_default) is the pointwise forward pass itself."""
  model, _, loaded = exported(name)
  assert set(loaded.signatures) == {"rank", "score", "serving_default"}
  empty_target = dict(USER, target_item_ids=[], target_timestamps=[])
  for user in (USER, empty_target):
    expected = model(pointwise_features(model, user), training=False)
    out = loaded.signatures["rank"](**rank_request(model, user))
    assert out["logits"].shape == [len(CANDIDATES)] and out["logits"].dtype == tf.float32
    close(out["logits"], expected)
    close(out["scores"], tf.sigmoid(expected))
    # The batch signature takes padded histories of any width <= 50 and derives the masks.
    for length in (3, SEQ, 7):
      batch = loaded.signatures["serving_default"](
          **pointwise_features(model, user, length=length, masks=False))
      close(batch["logits"], expected)
  assert not np.allclose(expected, expected[0]), "candidates should get different scores"


def test_fresh_process_loads_and_scores_without_tfrec(exported, tmp_path):
  """A serving process: plain TensorFlow, no tfrec, no tf_keras, a new Python."""
  model, path, _ = exported("cross_bst")
  rank_in = {k: v.numpy() for k, v in rank_request(model).items()}
  score_in = {k: v.numpy() for k, v in pointwise_features(model, masks=False).items()}
  np.savez(tmp_path / "rank.npz", **rank_in)
  np.savez(tmp_path / "score.npz", **score_in)
  code = (
      "import sys, numpy as np, tensorflow as tf\n"
      "m = tf.saved_model.load(sys.argv[1])\n"
      "out = {}\n"
      "for sig in ('rank', 'score'):\n"
      "  inputs = dict(np.load(sys.argv[2] + '/' + sig + '.npz', allow_pickle=False))\n"
      "  res = m.signatures[sig](**{k: tf.constant(v) for k, v in inputs.items()})\n"
      "  out.update({sig + '_' + k: v.numpy() for k, v in res.items()})\n"
      "np.savez(sys.argv[2] + '/out.npz', **out)\n"
      "assert 'tfrec' not in sys.modules and 'tf_keras' not in sys.modules\n")
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  proc = subprocess.run([sys.executable, "-c", code, path, str(tmp_path)], env=env,
                        cwd=str(tmp_path), capture_output=True, text=True, timeout=180)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = np.load(tmp_path / "out.npz", allow_pickle=False)
  expected = model(pointwise_features(model), training=False)
  close(out["rank_logits"], expected)
  close(out["rank_scores"], tf.sigmoid(expected))
  close(out["score_logits"], expected)
  close(out["score_scores"], tf.sigmoid(expected))


def test_saved_model_cli_lists_the_rank_signature(exported):
  cli = shutil.which("saved_model_cli")
  if cli is None:
    pytest.skip("saved_model_cli is not installed")
  model, path, _ = exported("cross_bst")
  proc = subprocess.run([cli, "show", "--dir", path, "--tag_set", "serve", "--signature_def",
                         "rank"], capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = proc.stdout
  for name in export_lib.rank_input_specs(model.domains):
    assert re.search(rf"inputs\['{name}'\] tensor_info:\s+dtype: DT_INT64", text), text
  assert re.search(r"inputs\['timestamp'\] tensor_info:\s+dtype: DT_INT64\s+shape: \(\)", text)
  assert re.search(r"inputs\['candidate_item_ids'\][^\n]*\n[^\n]*\n\s+shape: \(-1\)", text)
  for name in ("scores", "logits"):
    assert re.search(rf"outputs\['{name}'\] tensor_info:\s+dtype: DT_FLOAT", text), text


def test_long_histories_score_as_their_newest_events(exported):
  """Truncation keeps the newest max_seq_len events, as the input pipeline does; trailing
  padding is ignored."""
  model, _, loaded = exported("cross_bst")
  long_user = dict(USER, source_item_ids=[4, 5, 1, 2, 3, 4, 5, 1],
                   source_timestamps=[h * HOUR for h in range(8)])
  newest = dict(long_user, source_item_ids=long_user["source_item_ids"][-SEQ:],
                source_timestamps=long_user["source_timestamps"][-SEQ:])
  expected = model(pointwise_features(model, newest), training=False)
  rank = loaded.signatures["rank"]
  close(rank(**rank_request(model, long_user))["logits"], expected)
  padded = dict(USER, source_item_ids=USER["source_item_ids"] + [0, 0],
                source_timestamps=USER["source_timestamps"] + [0, 0])
  close(rank(**rank_request(model, padded))["logits"],
        rank(**rank_request(model, USER))["logits"])
  batch = pointwise_features(model, long_user, length=8, masks=False)
  close(loaded.signatures["score"](**batch)["logits"], expected)
  oldest = dict(long_user, source_item_ids=long_user["source_item_ids"][:SEQ],
                source_timestamps=long_user["source_timestamps"][:SEQ])
  assert not np.allclose(expected, model(pointwise_features(model, oldest), training=False))


# ----------------------------------------------------------------------------- bad requests

LONG = list(range(1, 11)) * 5 + [1]  # 51 events: over the data contract's 50
RANK_CASES = {
    "candidates rank 2": (dict(candidate_item_ids=[[6, 7]]), "candidate_item_ids must be a vector"),
    "timestamp rank 1": (dict(timestamp=[NOW]), "timestamp must be a scalar"),
    "history rank 0": (dict(source_item_ids=3), "source_item_ids must be a vector"),
    "unaligned": (dict(target_timestamps=[HOUR]),
                  "target_item_ids and target_timestamps must have the same length"),
    "too long": (dict(source_item_ids=LONG, source_timestamps=range(51)),
                 "source_item_ids holds at most 50 events"),
    "no candidates": (dict(candidate_item_ids=np.zeros([0], np.int64)),
                      "candidate_item_ids is empty"),
    "candidate 0": (dict(candidate_item_ids=[6, 0]), "candidate_item_ids: item ids must be in "
                    "[1, 10]; unknown ids:] [0]"),
    "candidate 11": (dict(candidate_item_ids=[11, 6]), "candidate_item_ids: item ids must be "
                     "in [1, 10]; unknown ids:] [11]"),
    "history -1": (dict(source_item_ids=[1, -1, 2]), "source_item_ids: item ids must be in "
                   "[0, 10]; unknown ids:] [-1]"),
    "history 11": (dict(target_item_ids=[6, 11]), "target_item_ids: item ids must be in "
                   "[0, 10]; unknown ids:] [11]"),
    "item after padding": (dict(source_item_ids=[1, 0, 2]),
                           "source_item_ids has a real item after padding"),
    "time goes back": (dict(target_timestamps=[9 * HOUR, 3 * HOUR]),
                       "target_timestamps must be non-decreasing"),
}


@pytest.mark.parametrize("case", sorted(RANK_CASES))
def test_malformed_rank_request_fails_naming_the_input(exported, case):
  model, _, loaded = exported("cross_bst")
  overrides, message = RANK_CASES[case]
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    loaded.signatures["rank"](**rank_request(model, **overrides))


def _score_cases(model):
  good = {k: v.numpy() for k, v in pointwise_features(model, masks=False).items()}
  n = len(good["item_id"])
  return {
      "item_id rank 2": (dict(item_id=good["item_id"][:, None]), "item_id must be a vector"),
      "history rank 1": (dict(source_item_ids=good["source_item_ids"][0]),
                         "source_item_ids must be a matrix"),
      "rows differ": (dict(item_id=np.r_[good["item_id"], 6]), "rows of item_id and of "
                      f"timestamp:] [{n + 1}] [{n}]"),
      "unaligned": (dict(target_timestamps=good["target_timestamps"][:, :2]),
                    "target_item_ids and target_timestamps must have the same shape"),
      "too long": (dict(source_item_ids=np.ones([n, 51]), source_timestamps=np.ones([n, 51])),
                   "source_item_ids holds at most 50 events"),
      "item 0": (dict(item_id=np.r_[good["item_id"][1:], 0]), "item_id: item ids must be in "
                 "[1, 10]; unknown ids:] [0]"),
      "history 11": (dict(source_item_ids=np.where(good["source_item_ids"] == 2, 11,
                                                   good["source_item_ids"])),
                     "source_item_ids: item ids must be in [0, 10]"),
  }, good


def test_malformed_score_requests_fail_naming_the_input(exported):
  model, _, loaded = exported("cross_bst")
  cases, good = _score_cases(model)
  for case, (overrides, message) in cases.items():
    request = {k: tf.constant(np.asarray(v, np.int64)) for k, v in {**good, **overrides}.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
      loaded.signatures["score"](**request)
      pytest.fail(f"case {case!r} passed")


# ----------------------------------------------------------------------------- writing


def test_export_is_atomic_and_refuses_to_overwrite(exported, tmp_path, monkeypatch):
  model, _, _ = exported("youtubenet")
  target = tmp_path / "serving" / "1"
  target.mkdir(parents=True)
  (target / "keep.txt").write_text("not a model")
  with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
    export_lib.export(model, str(target))
  assert (target / "keep.txt").exists()

  def broken_save(*args, **kwargs):
    os.makedirs(args[1], exist_ok=True)
    raise RuntimeError("disk full")

  monkeypatch.setattr(tf.saved_model, "save", broken_save)
  with pytest.raises(RuntimeError, match="disk full"):
    export_lib.export(model, str(tmp_path / "serving" / "2"))
  monkeypatch.undo()
  assert sorted(os.listdir(tmp_path / "serving")) == ["1"]  # no "2", no "2.incomplete"

  assert export_lib.export(model, str(target), overwrite=True) == str(target)
  assert sorted(os.listdir(tmp_path / "serving")) == ["1"]
  assert not (target / "keep.txt").exists()
  assert "rank" in tf.saved_model.load(str(target)).signatures


def test_export_run_rebuilds_the_run_model_from_its_checkpoint(tiny_dir, tmp_path):
  """What `python -m tfrec.export --run_dir=R --export_dir=E` does, in this process."""
  run_dir = str(tmp_path / "run")
  cfg = config_lib.RunConfig(
      data=config_lib.DataConfig(data_dir=tiny_dir, max_seq_len=SEQ),
      model=config_lib.ModelConfig("din", dict(dim=DIM, attention_units=[4], mlp_units=[DIM])),
      train=config_lib.TrainConfig(run_dir=run_dir))
  cfg.save()
  keras.utils.set_random_seed(3)
  model = runs.build_model(cfg, tiny_info(), tiny_store())
  model.save_weights(config_lib.run_paths(run_dir)["final"])
  with pytest.raises(FileNotFoundError, match="no run configuration"):
    export_lib.export_run(str(tmp_path / "nowhere"), str(tmp_path / "e0"))
  with pytest.raises(FileNotFoundError, match="not a checkpoint prefix"):
    export_lib.export_run(run_dir, str(tmp_path / "e0"), checkpoint=str(tmp_path / "nothing"))
  with pytest.raises(FileNotFoundError, match="no 'best' checkpoint .*it has: final"):
    export_lib.export_run(run_dir, str(tmp_path / "e0"))  # never the final one instead
  # A checkpoint given by path: the model comes from the run's config.json.
  path = export_lib.export_run(run_dir, str(tmp_path / "e1"),
                               checkpoint=config_lib.run_paths(run_dir)["final"])
  assert not os.path.exists(tmp_path / "e0")
  loaded = tf.saved_model.load(path)
  expected = model(pointwise_features(model), training=False)
  close(loaded.signatures["rank"](**rank_request(model))["logits"], expected)


def _saved_youtubenet_run(tiny_dir, tmp_path, which):
  """A run directory holding a tiny YouTubeNet's config.json and its `which` checkpoint."""
  run_dir = str(tmp_path / "run")
  cfg = config_lib.RunConfig(
      data=config_lib.DataConfig(data_dir=tiny_dir, max_seq_len=SEQ),
      model=config_lib.ModelConfig("youtubenet", dict(dim=DIM, mlp_units=[DIM])),
      train=config_lib.TrainConfig(run_dir=run_dir))
  cfg.save()
  model = runs.build_model(cfg, tiny_info(), tiny_store())
  model.save_weights(config_lib.run_paths(run_dir)[which])
  return run_dir, model


@pytest.mark.slow
def test_command_line(tiny_dir, tmp_path):
  run_dir, model = _saved_youtubenet_run(tiny_dir, tmp_path, "best")
  flagfile = tmp_path / "run.flags"
  flagfile.write_text(f"--run_dir={run_dir}\n--data_dir={tiny_dir}\n")
  export_dir = str(tmp_path / "serving" / "1")
  cmd = [sys.executable, "-m", "tfrec.export", f"--flagfile={flagfile}",
         f"--export_dir={export_dir}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"wrote {export_dir}" in proc.stdout
  assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 1 and "--overwrite" in proc.stderr


def test_requests_up_to_the_datasets_max_seq_len_are_accepted(tiny_dir, tmp_path):
  """A dataset declaring max_seq_len = 120 (> the contract's 50): its export takes 60 events
  (and 120) per history and refuses 121, naming the input and the limit."""
  import dataclasses
  dataclasses.replace(tiny_info(), max_seq_len=120).save(tiny_dir)
  run_dir, model = _saved_youtubenet_run(tiny_dir, tmp_path, "final")
  path = export_lib.export_run(run_dir, str(tmp_path / "e"), checkpoint="final")
  rank = tf.saved_model.load(path).signatures["rank"]

  def user(n):
    return dict(USER, target_item_ids=[6 + i % 5 for i in range(n)],
                target_timestamps=list(range(n)))

  expected = model(pointwise_features(model, user(60)), training=False)  # its newest 5
  close(rank(**rank_request(model, user(60)))["logits"], expected)
  assert rank(**rank_request(model, user(120)))["logits"].shape == [NUM_ITEMS]
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="rank: target_item_ids holds at most 120 events"):
    rank(**rank_request(model, user(121)))
  assert export_lib.read_export_info(path)["max_len"] == 120
