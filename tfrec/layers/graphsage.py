r"""GraphSAGE's pooling aggregator (Hamilton, Ying and Leskovec, NeurIPS 2017, §3.3 "Pooling
aggregator", Algorithm 1) and its fixed-size neighbour sampling, for M5's content-graph (CG)
embeddings (Ye et al., KDD 2023, §4.2.1: "M5 adopts pooling-based GraphSAGE").

One aggregator layer k, for a node v and its sampled neighbours N(v):

    h_N  = max_{u in N(v)} sigma(W_pool h_u + b)          (elementwise max; §3.3)
    h_v' = sigma(W [h_v ; h_N])                            (Algorithm 1, line 5)
    h_v' = h_v' / ||h_v'||_2                               (line 7; `normalize`)

Neighbours come from `sample_neighbours`: a fixed number per node, drawn uniformly with
replacement from the node's CSR row, stateless (the same seed gives the same sample). A node
without neighbours gets padding (id 0) with a False mask; a masked neighbour never enters the
max, and a node with none gets h_N = 0 (finite, never -inf or NaN).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer


def sample_neighbours(indptr: tf.Tensor, indices: tf.Tensor, nodes: tf.Tensor,
                      num_samples: int, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Draws `num_samples` neighbours per node uniformly with replacement from a CSR adjacency.

  Args:
    indptr: <int64>[num_nodes + 1] row pointers.
    indices: <int64>[num_directed_edges] neighbour ids (node v's are
      indices[indptr[v]:indptr[v + 1]]).
    nodes: <int>[...] node ids in [0, num_nodes).
    num_samples: S, neighbours per node.
    seed: <int32|int64>[2] seed of the stateless draw.

  Returns:
    (ids <int64>[..., S], mask <bool>[..., S]): each node's sampled neighbours, and True where
    the node has any; a node with none gets ids 0 and mask False.
  """
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")
  indptr = tf.cast(indptr, tf.int64)
  indices = tf.cast(indices, tf.int64)
  nodes = tf.cast(nodes, tf.int64)
  start = tf.gather(indptr, nodes)
  degree = tf.gather(indptr, nodes + 1) - start
  shape = tf.concat([tf.shape(nodes, out_type=tf.int64), [num_samples]], axis=0)
  u = tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float64)
  degree_s = degree[..., None]
  position = tf.cast(tf.floor(u * tf.cast(degree_s, tf.float64)), tf.int64)
  position = tf.minimum(position, tf.maximum(degree_s - 1, 0))  # u * d rounding up to d
  has = tf.broadcast_to(degree_s > 0, tf.shape(position))
  # A node without neighbours reads the sentinel appended after the last edge (id 0), so the
  # gather stays in range even for a graph without edges.
  sentinel = tf.size(indices, out_type=tf.int64)
  flat = tf.where(has, start[..., None] + position, sentinel)
  ids = tf.gather(tf.concat([indices, tf.zeros([1], tf.int64)], axis=0), flat)
  return ids, has


@keras.utils.register_keras_serializable(package="tfrec")
class GraphSAGEPooling(keras.layers.Layer):
  """One GraphSAGE layer with the pooling aggregator (module docstring).

  Args:
    units: width of h_v' (W: [d_in + pool_units, units]).
    pool_units: width of the pooled neighbour vectors (W_pool: [d_in, pool_units]); None =
      `units`.
    activation: sigma of the output (None = linear: GraphSAGE's reference code leaves the last
      layer linear before normalising).
    pool_activation: sigma of the neighbour transform (ReLU in the paper's experiments).
    normalize: L2-normalise h_v' (Algorithm 1, line 7); a zero vector stays zero.
    use_bias: a bias in W (W_pool always has its b).
    kernel_initializer: of W and W_pool (cloned per kernel).

  Call args:
    inputs: <float32>[..., d_in] h_v of the nodes.
    neighbour_features: <float32>[..., S, d_in] h_u of their S sampled neighbours.
    neighbour_mask: <bool>[..., S], True = a real neighbour; None = all real.

  Returns:
    <float32>[..., units] h_v'.
  """

  def __init__(self, units: int, pool_units: Optional[int] = None,
               activation: Union[str, Callable[..., Any], None] = "relu",
               pool_activation: Union[str, Callable[..., Any]] = "relu",
               normalize: bool = True, use_bias: bool = True,
               kernel_initializer: Any = "glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    if int(units) < 1 or (pool_units is not None and int(pool_units) < 1):
      raise ValueError(f"units and pool_units must be >= 1, got {units}, {pool_units}")
    self.units = int(units)
    self.pool_units = None if pool_units is None else int(pool_units)
    self.activation = keras.activations.get(activation)
    self.pool_activation = keras.activations.get(pool_activation)
    self.normalize = bool(normalize)
    self.use_bias = bool(use_bias)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.pool = keras.layers.Dense(self.pool_units or self.units, use_bias=True,
                                   kernel_initializer=clone_initializer(self.kernel_initializer),
                                   name="pool")
    self.combine = keras.layers.Dense(self.units, use_bias=self.use_bias,
                                      kernel_initializer=clone_initializer(
                                          self.kernel_initializer), name="combine")

  def call(self, inputs: tf.Tensor, neighbour_features: tf.Tensor,
           neighbour_mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    pooled = self.pool_activation(self.pool(neighbour_features))  # [..., S, p]
    if neighbour_mask is None:
      neighbour_mask = tf.ones(tf.shape(pooled)[:-1], tf.bool)
    mask = tf.cast(neighbour_mask, tf.bool)[..., None]
    filled = tf.where(mask, pooled, tf.constant(pooled.dtype.min, pooled.dtype))
    h_n = tf.reduce_max(filled, axis=-2)
    h_n = tf.where(tf.reduce_any(mask, axis=-2), h_n, tf.zeros_like(h_n))
    h = self.activation(self.combine(tf.concat([inputs, h_n], axis=-1)))
    if self.normalize:
      h = tf.math.l2_normalize(h, axis=-1)
    return h

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(units=self.units, pool_units=self.pool_units,
                  activation=keras.activations.serialize(self.activation),
                  pool_activation=keras.activations.serialize(self.pool_activation),
                  normalize=self.normalize, use_bias=self.use_bias,
                  kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
    return config
