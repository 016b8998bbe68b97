"""COUPLE's user-group memory (§3.2.3): a hierarchical memory tree whose leaves are memory slots,
Gumbel-softmax sampling of the leaves in training, top-K leaves at inference, and the SRIP
orthogonality penalty on the tree's slot matrices.

  w_{1,k}   = softmax_k(e . s_{1,k})                                     layer 1 (the root's
                                                                          children), sums to 1
  w_{i+1,k} = w_{i,j} . softmax_{k in children(j)}(e . s_{i+1,k})        eq. 6: the children of
                                                                          node j share its weight
  y_k       = softmax_k((log w_k + g_k) / tau),  g_k ~ Gumbel(0, 1)       eq. 7 (training)
  e^(g)     = sum over the K leaves with the largest y_k (training) or    eq. 8
              w_k (inference) of (y_k or w_k) . s_leaf,k
  L_O       = lambda . sum over the tree's slot matrices W of sigma(W^T W - I)   eq. 9-10

e <float>[batch, dim] is the user's history representation (eq. 4); the slots s_{i,k}
<float>[n_i, dim]; a tree (1-)32-512 has `branching=(32, 16)`: 32 nodes in layer 1, 16 children
per node, 512 leaves; the children of node j of a layer are nodes j b .. (j + 1) b - 1 of the
next (b its branching).

Choices the paper leaves open, stated here:
  * Training sums the top-K leaves by their Gumbel-softmax weights y (the sampled selection the
    paper describes for fighting dead nodes); inference uses the top-K by w (eq. 8). Neither
    renormalises the K weights.
  * SRIP (eq. 9-10) is taken on the Gram matrix of the slot matrix's smaller side, as in SRIP's
    paper (Bansal et al. 2018): a [512, 64] leaf matrix cannot have 512 orthonormal rows, so its
    64 columns are asked to be orthonormal (W^T W - I is 64 x 64); a [32, 64] layer asks its 32
    rows (W W^T - I is 32 x 32).
  * The power iteration starts from a fixed vector per matrix (a stateless draw of
    `srip_seed`), so the penalty is a deterministic function of the weights.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers import step_random


def gumbel_temperature(step: Any, initial: float = 20.0, rate: float = 1e-5,
                       floor: float = 1.0, every: int = 1000) -> tf.Tensor:
  """COUPLE §4.3's schedule: tau = max(floor, initial . exp(-rate . t)), t the step rounded
  down to a multiple of `every` (updated every 1,000 steps). <float32>[]."""
  t = tf.cast((tf.cast(step, tf.int64) // every) * every, tf.float32)
  return tf.maximum(tf.constant(floor, tf.float32), initial * tf.exp(-rate * t))


def gumbel_softmax(log_weights: tf.Tensor, temperature: Any,
                   seed: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Eq. 7: softmax((log w + g) / tau) over the last axis, g ~ Gumbel(0, 1) by inverse transform
  sampling (g = -log(-log u)), from a stateless `seed` (a step seed) or Keras' randomness."""
  shape = tf.shape(log_weights)
  tiny = 1e-20
  if seed is None:
    u = tf.random.uniform(shape, minval=tiny, maxval=1.0)
  else:
    u = tf.random.stateless_uniform(shape, seed, minval=tiny, maxval=1.0)
  g = -tf.math.log(-tf.math.log(u))
  return tf.nn.softmax((log_weights + tf.cast(g, log_weights.dtype))
                       / tf.cast(temperature, log_weights.dtype), axis=-1)


def srip(matrix: tf.Tensor, iterations: int = 2, seed: Tuple[int, int] = (7, 11)) -> tf.Tensor:
  """Eq. 10's power-iteration estimate of sigma(W^T W - I), the spectral norm of the Gram
  matrix of W's smaller side minus the identity: v a fixed random vector, then `iterations`
  times u = A v, v = A u, sigma = |v| / |u| (A = Gram - I, symmetric; v rescaled to unit length
  before each iteration, which keeps many iterations finite and leaves the ratio unchanged).
  With eq. 10's 2 iterations it is a lower bound of the exact norm. <float32>[]."""
  w = tf.cast(matrix, tf.float32)
  rows, cols = w.shape
  gram = tf.matmul(w, w, transpose_a=True) if rows >= cols else tf.matmul(w, w, transpose_b=True)
  n = min(rows, cols)
  a = gram - tf.eye(n)
  v = tf.random.stateless_normal([n, 1], seed)
  u = v
  for _ in range(iterations):
    v = v / tf.maximum(tf.norm(v), 1e-12)  # rescaling leaves the ratio below unchanged
    u = tf.matmul(a, v)
    v = tf.matmul(a, u)
  return tf.norm(v) / tf.maximum(tf.norm(u), 1e-12)


@keras.utils.register_keras_serializable(package="tfrec")
class MemoryTree(keras.layers.Layer):
  """The hierarchical memory tree (module docstring).

  Args:
    dim: width d of the user representation and of every memory slot.
    branching: nodes of layer 1, then children per node of each later layer (COUPLE 1-32-512:
      (32, 16)).
    top_k: K leaves summed into e^(g) (eq. 8).
    srip_weight: lambda of eq. 9 (COUPLE: 0.1); 0 switches the penalty off.
    srip_iterations: power iterations of eq. 10 (COUPLE: 2).

  Call args:
    e: <float>[batch, dim] the user history representation.
    temperature: tau of eq. 7 (a scalar; `gumbel_temperature(step)`), used in training.
    training: Gumbel-softmax sampling (True) or eq. 8's top-K by weight.

  Returns:
    <float>[batch, dim] e^(g). The penalty is the model's to name (`srip_loss()`, eq. 9: the
    core's training contract takes it as a named loss).
  """

  def __init__(self, dim: int, branching: Sequence[int] = (32, 16), top_k: int = 8,
               srip_weight: float = 0.1, srip_iterations: int = 2, **kwargs):
    super().__init__(**kwargs)
    branching = tuple(int(b) for b in branching)
    if not branching or min(branching) < 1:
      raise ValueError(f"branching must be positive node counts, got {branching}")
    leaves = math.prod(branching)
    if not 1 <= int(top_k) <= leaves:
      raise ValueError(f"top_k must be in [1, {leaves}] (the leaves), got {top_k}")
    self.dim, self.branching, self.top_k = int(dim), branching, int(top_k)
    self.srip_weight, self.srip_iterations = float(srip_weight), int(srip_iterations)

  @property
  def layer_sizes(self) -> Tuple[int, ...]:
    """Nodes per layer: (32, 512) for branching (32, 16)."""
    sizes, n = [], 1
    for b in self.branching:
      n *= b
      sizes.append(n)
    return tuple(sizes)

  def build(self, input_shape: tf.TensorShape) -> None:
    self.slots = [self.add_weight(f"slots_{i + 1}", shape=[n, self.dim],
                                  initializer=keras.initializers.Orthogonal())
                  for i, n in enumerate(self.layer_sizes)]
    super().build(input_shape)

  def node_weights(self, e: tf.Tensor) -> Tuple[tf.Tensor, ...]:
    """Eq. 6: per layer <float32>[batch, n_i] node weights; each layer sums to 1 and the
    children of a node sum to its weight."""
    e = tf.cast(e, tf.float32)
    out, parent = [], None
    for i, (slots, b) in enumerate(zip(self.slots, self.branching)):
      scores = tf.matmul(e, tf.cast(slots, tf.float32), transpose_b=True)    # [batch, n_i]
      if i == 0:
        w = tf.nn.softmax(scores, axis=-1)
      else:
        n = parent.shape[-1]
        grouped = tf.reshape(scores, [-1, n, b])                            # [batch, n_{i-1}, b]
        w = tf.reshape(parent[..., None] * tf.nn.softmax(grouped, axis=-1), [-1, n * b])
      out.append(w)
      parent = w
    return tuple(out)

  def call(self, e: tf.Tensor, temperature: Any = 1.0,
           training: Optional[bool] = None) -> tf.Tensor:
    leaves = self.node_weights(e)[-1]                                       # [batch, L]
    if training:
      weights = gumbel_softmax(tf.math.log(tf.maximum(leaves, 1e-20)), temperature,
                               step_random.step_seed())
    else:
      weights = leaves
    top, index = tf.math.top_k(weights, k=self.top_k)                       # [batch, K]
    chosen = tf.gather(tf.cast(self.slots[-1], tf.float32), index)          # [batch, K, dim]
    return tf.cast(tf.reduce_sum(top[..., None] * chosen, axis=1), self.compute_dtype)

  def srip_loss(self) -> tf.Tensor:
    """Eq. 9: lambda . sum over the layers' slot matrices of sigma(W^T W - I) (eq. 10)."""
    return self.srip_weight * tf.add_n([srip(s, self.srip_iterations, seed=(7, i))
                                        for i, s in enumerate(self.slots)])

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "dim": self.dim, "branching": list(self.branching),
            "top_k": self.top_k, "srip_weight": self.srip_weight,
            "srip_iterations": self.srip_iterations}


__all__ = ["MemoryTree", "gumbel_softmax", "gumbel_temperature", "srip"]
