"""Momentum key encoders (SEMI §3.3 eq. 9; MoCo): theta_k <- m theta_k + (1 - m) theta_q.

Key encoders are copies of the query encoders that receive no gradients. Their variables are
created inside `first_replica_variables()` so that a replica context may assign them: every
replica computes the same update from the same (all-reduced) query weights, and
ONLY_FIRST_REPLICA writes it once.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, List, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

Pair = Tuple[tf.Variable, tf.Variable]  # (query variable, key variable)


@contextlib.contextmanager
def first_replica_variables() -> Iterator[None]:
  """Variables created inside aggregate with ONLY_FIRST_REPLICA (assignable per replica)."""

  def creator(next_creator, **kwargs):
    kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
    return next_creator(**kwargs)

  with tf.variable_creator_scope(creator):
    yield


def variable_pairs(query_layers: Sequence[keras.layers.Layer],
                   key_layers: Sequence[keras.layers.Layer]) -> List[Pair]:
  """Matches each trainable query variable with its key twin (same path below the layer).

  Raises:
    ValueError: the layers are not built alike (different variable counts or shapes).
  """
  pairs = []
  for q_layer, k_layer in zip(query_layers, key_layers, strict=True):
    keys = {_relative_name(v, k_layer): v for v in k_layer.weights}
    if len(keys) != len(q_layer.weights):
      raise ValueError(f"{k_layer.name} has {len(keys)} variables, its query twin "
                       f"{q_layer.name} {len(q_layer.weights)}: build both on the same inputs "
                       "first")
    for q in q_layer.trainable_weights:
      k = keys.get(_relative_name(q, q_layer))
      if k is None or q.shape != k.shape:
        raise ValueError(f"{q.name} {q.shape} has no key twin of that shape in {k_layer.name}")
      pairs.append((q, k))
  return pairs


def _relative_name(v: tf.Variable, layer: keras.layers.Layer) -> str:
  """A variable's name below its layer ("item_encoder/visual_projection/kernel:0" ->
  "visual_projection/kernel:0"), whatever scope the layer was built in."""
  marker = layer.name + "/"
  name = v.name
  if marker not in name:
    raise ValueError(f"variable {name} is not under layer {layer.name}")
  return name[name.index(marker) + len(marker):]


def copy_weights(pairs: Sequence[Pair]) -> None:
  """theta_k <- theta_q (MoCo's initialisation of the key encoder)."""
  for q, k in pairs:
    k.assign(tf.cast(q, k.dtype))


def momentum_update(pairs: Sequence[Pair], momentum: float) -> None:
  """theta_k <- m theta_k + (1 - m) theta_q (eq. 9); call after the query step."""
  m = float(momentum)
  for q, k in pairs:
    k.assign(m * k + (1.0 - m) * tf.cast(q, k.dtype))


def fit_momentum(total_steps: int, queue_size: int, batch_size: int) -> float:
  """The momentum m of eq. 9 fitted to a run's length (`--model_args=momentum_rule=steps`).

  The key encoders are an exponential average of the query encoders over tau = 1 / (1 - m)
  steps. Two spans bound tau: the queue's, K / B steps (the age of its oldest key: keys written
  over that span must come from nearly the same encoder, MoCo's consistency argument, so tau
  >> K / B), and the run's, S steps (the key encoders must forget their initial weights,
  m^S << 1, so tau << S). The rule takes their geometric mean,

      tau = sqrt(S * K / B),   m = 1 - 1 / tau   (m = 0 when tau <= 1),

  which keeps tau / (K / B) = S / tau: both margins equal. SEMI A.1 (K = 40 x 1024, B = 1024,
  about 27,600 steps an epoch) gives tau ~ 1,050, m ~ 0.99905: the paper's 0.999. A run of 360
  steps at K = 256, B = 64 gets tau = 38, m = 0.974, and keeps 0.974^360 ~ 1e-4 of its initial
  key weights, where m = 0.999 would keep 70%.

  Args:
    total_steps: S, the optimizer steps of the pre-training run (> 0).
    queue_size: K, keys per dictionary.
    batch_size: B, keys enqueued per step (the global batch).
  """
  if total_steps < 1 or queue_size < 1 or batch_size < 1:
    raise ValueError(f"fit_momentum needs positive steps, queue and batch sizes, got "
                     f"{total_steps}, {queue_size}, {batch_size}")
  tau = math.sqrt(total_steps * queue_size / batch_size)
  return 0.0 if tau <= 1.0 else 1.0 - 1.0 / tau
