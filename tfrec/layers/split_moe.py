"""M5's Split Mixture-of-Experts (Zhao et al., KDD 2023, §4.4.1, eq. 4) and its disagreement
regularisation (§4.4.2, eq. 5).

  u_s   = Post_s( sum_k Expert_k(f_s) Gate_k(f_s) ),   k = 1..n_exp                     eq. 4
  L_DIS = 1/n_exp^2 sum_k sum_l |Expert_k(x) . Expert_l(x)| / (|Expert_k(x)| |Expert_l(x)|)  eq. 5

f_s <[batch, d_in]> is the scenario-aware input (`ScenarioIndicator`: the features crossed with
the scenario indicator), so ONE gate serves every scenario ("a single gate network as input
f_s is already discriminative"); the experts are shared; the mixture is split by scenario,
each part goes through its scenario's post-processing tower Post_s, and the parts are gathered
back in batch order (Fig. 4).

Reading choices, stated:
  * "two-layer MLP with Swish activations" (experts, gate, towers): Dense(hidden, swish) ->
    Dense(out), the second layer linear (a user embedding scored by inner products, and gate
    logits, need not be bounded below by Swish's minimum); appendix: hidden 768, 0.1 dropout
    on the inputs of every MLP (each network draws its own mask). The paper does not give
    n_exp; `num_experts` defaults to 4.
  * eq. 5 is taken literally, diagonal k = l included: it adds the constant 1/n_exp to the loss
    (cos(x, x) = 1, zero gradient). `include_diagonal=False` averages the n(n-1) off-diagonal
    pairs instead. The loss is per example (<float32>[batch]), as the core's `compute_losses`
    contract takes it; M5 weighs it by beta = 0.1 (eq. 9), the model's to name.

Routing (`routing`): "partition" is the paper's split (`tf.dynamic_partition` by scenario, each
tower on its own rows, `tf.dynamic_stitch` back), so a tower only ever sees its scenario's rows
and an empty scenario costs nothing; "dense" runs every tower on every row and gathers each
row's own (S times the tower work, but static shapes, e.g. for XLA). Both give the same output
(tested) and neither lets another scenario's tower change a row's output or receive its
gradient.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.mlp import MLP
from tfrec.layers.scenario_indicator import check_scenario_ids
from tfrec.layers.step_random import Dropout

ROUTINGS = ("partition", "dense")


class TwoLayerNetwork(keras.layers.Layer):
  """Dropout(inputs) -> Dense(hidden, activation) -> Dense(out): M5's expert, gate and
  post-processing network (§4.4.1; appendix: 0.1 dropout on the inputs). Built by its parent
  from the parent's config (not serialised on its own).

  Call args: x <float>[batch, d_in]; training. Returns <float>[batch, out].
  """

  def __init__(self, hidden_dim: int, output_dim: int, activation: Any, dropout: float,
               kernel_initializer: Any, **kwargs):
    super().__init__(**kwargs)
    policy = self.dtype_policy
    self.dropout = Dropout(dropout, name="input_dropout", dtype=policy) if dropout else None
    self.mlp = MLP([hidden_dim, output_dim], activation=activation, linear_output=True,
                   kernel_initializer=kernel_initializer, name="mlp", dtype=policy)

  def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    if self.dropout is not None:
      x = self.dropout(x, training=training)
    return self.mlp(x, training=training)


def route_by_scenario(fn: Callable[..., Any], inputs: Sequence[tf.Tensor],
                      scenario_ids: tf.Tensor, num_scenarios: int,
                      routing: str = "partition") -> Any:
  """Applies `fn(s, *rows_of_s)` to each scenario's rows of `inputs` and puts the results back
  in batch order: row i's result comes from `fn(scenario_ids[i], ...)` alone.

  Args:
    fn: (scenario index, *[n_s, ...] tensors) -> a tensor or a tuple of tensors, each [n_s, ...].
    inputs: tensors sharing the leading batch axis.
    scenario_ids: <int32>[batch] (already checked) in [0, num_scenarios).
    routing: "partition" (split, apply, stitch) or "dense" (apply every fn to every row, gather).

  Returns:
    like fn's result, each [batch, ...].
  """
  if routing not in ROUTINGS:
    raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
  batch = inputs[0].shape[0]
  if routing == "dense":
    outs = [fn(s, *inputs) for s in range(num_scenarios)]
    single = not isinstance(outs[0], tuple)
    columns = [[o] if single else list(o) for o in outs]
    result = tuple(tf.gather(tf.stack([c[j] for c in columns], axis=1), scenario_ids,
                             batch_dims=1) for j in range(len(columns[0])))
    return result[0] if single else result
  rows = tf.range(tf.shape(inputs[0])[0])
  row_parts = tf.dynamic_partition(rows, scenario_ids, num_scenarios)
  parts = [tf.dynamic_partition(x, scenario_ids, num_scenarios) for x in inputs]
  outs = [fn(s, *[p[s] for p in parts]) for s in range(num_scenarios)]
  single = not isinstance(outs[0], tuple)
  columns = [[o] if single else list(o) for o in outs]
  result = []
  for j in range(len(columns[0])):
    stitched = tf.dynamic_stitch(row_parts, [c[j] for c in columns])
    stitched.set_shape([batch] + columns[0][j].shape[1:].as_list())
    result.append(stitched)
  return result[0] if single else tuple(result)


def disagreement_loss(expert_outputs: Union[tf.Tensor, Sequence[tf.Tensor]],
                      include_diagonal: bool = True) -> tf.Tensor:
  """Eq. 5: the mean absolute cosine similarity between every pair of expert outputs, per example.

  Args:
    expert_outputs: <float>[batch, n_exp, dim] (`call(..., return_experts=True)`'s "experts"),
      or a sequence of them (PLE's levels): then the mean of the levels' losses.
    include_diagonal: eq. 5 as written (k = l included, a constant 1/n_exp); False averages the
      off-diagonal pairs only.

  Returns:
    <float32>[batch]. A zero expert output has cosine 0 with every expert (itself included).
  """
  if isinstance(expert_outputs, (list, tuple)):
    return tf.add_n([disagreement_loss(e, include_diagonal) for e in expert_outputs]) / float(
        len(expert_outputs))
  x = tf.cast(expert_outputs, tf.float32)
  n = x.shape[1]
  unit = tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)
  cos = tf.abs(tf.matmul(unit, unit, transpose_b=True))                    # [b, n, n]
  if include_diagonal:
    return tf.reduce_mean(cos, axis=[1, 2])
  if n < 2:
    raise ValueError("include_diagonal=False needs at least two experts")
  off = cos * (1.0 - tf.eye(n, dtype=tf.float32))
  return tf.reduce_sum(off, axis=[1, 2]) / float(n * (n - 1))


@keras.utils.register_keras_serializable(package="tfrec")
class SplitMixtureOfExperts(keras.layers.Layer):
  """SMoE of eq. 4 (module docstring): shared experts, one gate, a tower per scenario.

  Args:
    num_scenarios: S; scenario ids are in [0, S).
    output_dim: width of u_s (the user embedding scored against item embeddings).
    num_experts: n_exp.
    hidden_dim: hidden width of every two-layer network (M5: 768).
    expert_dim: output width of each expert (default: output_dim).
    dropout: dropout on the inputs of every network (M5: 0.1).
    activation: hidden activation (M5: Swish).
    routing: "partition" (the paper's split) or "dense" (module docstring).
    kernel_initializer: initialiser of every kernel (cloned per kernel).

  Call args:
    inputs: <float>[batch, d_in] f_s.
    scenario_ids: <int>[batch] in [0, S); an id outside fails naming "scenario_id".
    training: dropout switch.
    return_experts: also return {"experts": <float>[batch, n_exp, expert_dim] (eq. 5's input),
      "gates": <float32>[batch, n_exp] (softmax, rows sum to 1)}.

  Returns:
    <float>[batch, output_dim] u_s, each row from its own scenario's tower only; with
    `return_experts`, (u_s, the dict).
  """

  def __init__(self, num_scenarios: int, output_dim: int, num_experts: int = 4,
               hidden_dim: int = 768, expert_dim: Optional[int] = None, dropout: float = 0.1,
               activation: Any = "swish", routing: str = "partition",
               kernel_initializer: Any = "glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    if min(num_scenarios, output_dim, num_experts, hidden_dim) < 1:
      raise ValueError("num_scenarios, output_dim, num_experts and hidden_dim must be >= 1")
    if routing not in ROUTINGS:
      raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
    self.num_scenarios, self.output_dim = int(num_scenarios), int(output_dim)
    self.num_experts, self.hidden_dim = int(num_experts), int(hidden_dim)
    self.expert_dim = int(expert_dim) if expert_dim else self.output_dim
    self.dropout, self.routing = float(dropout), routing
    self.activation = keras.activations.get(activation)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def net(width: int, name: str) -> TwoLayerNetwork:
      return TwoLayerNetwork(self.hidden_dim, width, self.activation, self.dropout,
                             self.kernel_initializer, name=name, dtype=self.dtype_policy)

    self.experts = [net(self.expert_dim, f"expert_{k}") for k in range(self.num_experts)]
    self.gate = net(self.num_experts, "gate")
    self.towers = [net(self.output_dim, f"tower_{s}") for s in range(self.num_scenarios)]

  def call(self, inputs: tf.Tensor, scenario_ids: tf.Tensor, training: Optional[bool] = None,
           return_experts: bool = False) -> Union[tf.Tensor, Tuple[tf.Tensor, Dict[str, Any]]]:
    x = tf.cast(inputs, self.compute_dtype)
    ids = check_scenario_ids(scenario_ids, self.num_scenarios)
    experts = tf.stack([e(x, training=training) for e in self.experts], axis=1)  # [b, n, d_e]
    gates = tf.nn.softmax(tf.cast(self.gate(x, training=training), tf.float32), axis=-1)
    mixed = tf.einsum("bn,bnd->bd", tf.cast(gates, experts.dtype), experts)
    out = route_by_scenario(lambda s, m: self.towers[s](m, training=training), [mixed], ids,
                            self.num_scenarios, self.routing)
    if return_experts:
      return out, {"experts": experts, "gates": gates}
    return out

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_scenarios": self.num_scenarios,
            "output_dim": self.output_dim, "num_experts": self.num_experts,
            "hidden_dim": self.hidden_dim, "expert_dim": self.expert_dim,
            "dropout": self.dropout, "activation": keras.activations.serialize(self.activation),
            "routing": self.routing,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


__all__ = ["ROUTINGS", "SplitMixtureOfExperts", "TwoLayerNetwork", "disagreement_loss",
           "route_by_scenario"]
