"""tf.distribute paths on CPU: MirroredStrategy over 2 logical CPUs, and a two-process
MultiWorkerMirroredStrategy run on loopback ports. Each runs `python -m tfrec.train` in fresh
processes (logical devices must be configured before TensorFlow initialises)."""

import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

from tfrec import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_cmd(syn_dir, run_dir, *extra):
  return [sys.executable, "-m", "tfrec.train", f"--data_dir={syn_dir}", "--model=bst",
          "--model_args=dim=8,num_heads=2", "--max_seq_len=10", f"--run_dir={run_dir}",
          "--batch_size=32", "--validation_steps=0", "--learning_rate=0.003",
          "--shuffle_buffer=100", "--verbose=2", *extra]


def env(**extra):
  e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  e.update(extra)
  return e


def epoch_losses(run_dir):
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(
      os.path.join(config_lib.run_paths(run_dir)["logs"], "train"))
  acc.Reload()
  return [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("epoch_loss")]


def test_mirrored_strategy_on_two_logical_cpus_trains_and_loss_falls(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  # The default validation (the whole valid split: Keras needs its step count for a dataset
  # distributed over 2 replicas) and the logged loss weight (1, not 2 summed over replicas).
  cmd = [a for a in train_cmd(syn_dir, run, "--strategy=mirrored", "--cpu_replicas=2",
                              "--epochs=4", "--steps_per_epoch=6")
         if a != "--validation_steps=0"]
  out = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "MirroredStrategy with 2 replica(s)" in out.stderr
  losses = epoch_losses(run)
  assert len(losses) == 4 and losses[-1] < losses[0], losses
  assert tf.io.gfile.exists(config_lib.run_paths(run)["final"] + ".index")
  assert tf.io.gfile.exists(config_lib.run_paths(run)["best"] + ".index")  # validated
  epochs = [x for x in out.stdout.splitlines() if x.startswith("6/6") and "val_auc" in x]
  assert len(epochs) == 4 and all("_weight: 1.0000" in x and "_weight: 2.0" not in x
                                  for x in epochs), epochs


def free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_two_process_multi_worker_run_completes(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
  procs = []
  for i in range(2):
    tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker",
                                                                     "index": i}})
    procs.append(subprocess.Popen(
        train_cmd(syn_dir, run, "--strategy=multi_worker", "--epochs=2", "--steps_per_epoch=4"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=env(TF_CONFIG=tf_config)))
  results = []
  try:
    for p in procs:
      stdout, stderr = p.communicate(timeout=300)
      results.append((p.returncode, stderr))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for rc, stderr in results:
    assert rc == 0, stderr[-3000:]
  # MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy.
  assert "CollectiveAllReduceStrategy with 2 replica(s), 2 input pipeline(s)" in results[0][1]
  paths = config_lib.run_paths(run)
  assert tf.io.gfile.exists(paths["final"] + ".index")  # written by the chief (worker 0)
  assert len(epoch_losses(run)) == 2
  # Non-chief workers leave nothing in the run directory.
  assert sorted(os.listdir(run)) == ["backup", "checkpoints", "config.json", "flags.txt",
                                     "logs"]
