"""CGC and PLE (Tang et al., RecSys 2020) adapted to scenarios, M5's Table 2 variants "M5 w/ CGC"
and "M5 w/ PLE" (Zhao et al., KDD 2023, §5.3.3: "CGC explicitly separates shared and
scenario-specific experts and PLE stacks multiple layers of CGC"); the tasks of PLE are the
scenarios, and every row belongs to exactly one.

CGC (one level), for a row of scenario s with input x:
  E(x)   = [Shared_1(x), ..., Shared_m(x), Specific_{s,1}(x), ..., Specific_{s,n}(x)]
  g_s(x) = softmax(Gate_s(x))                                           over the m + n experts
  u_s    = Post_s( sum_k g_s,k(x) E_k(x) )

PLE (L levels): level l keeps a scenario path x_s^l and a shared path x_sh^l (x^1 = f_s for
both); x_s^{l+1} = g_s^l(x_s^l) . E^l, and below the last level x_sh^{l+1} =
g_sh^l(x_sh^l) . E^l, where E^l = [Shared^l(x_sh^l), Specific_s^l(x_s^l)]; u_s = Post_s(x_s^L).

Reading choice, stated: in PLE the shared gate mixes every task's specific experts; here a row
has one scenario, so its shared gate mixes the shared experts and ITS scenario's specific ones
(m + n experts): a row's output then depends only on the shared networks and its own
scenario's, as in SMoE, and no row runs another scenario's experts. Networks are M5's two-layer
MLPs (`split_moe.TwoLayerNetwork`); the paper gives no expert counts for these variants.
Eq. 5's disagreement takes each row's m + n experts ("experts", per level for PLE).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.scenario_indicator import check_scenario_ids
from tfrec.layers.split_moe import ROUTINGS, TwoLayerNetwork, route_by_scenario


@keras.utils.register_keras_serializable(package="tfrec")
class ProgressiveLayeredExtraction(keras.layers.Layer):
  """PLE over scenarios (module docstring); `num_levels=1` is CGC (`CustomizedGateControl`).

  Args:
    num_scenarios: S; scenario ids are in [0, S).
    output_dim: width of u_s.
    num_shared_experts: m shared experts per level.
    num_specific_experts: n experts per scenario per level.
    num_levels: L stacked extraction levels (1 = CGC).
    hidden_dim, expert_dim, dropout, activation, routing, kernel_initializer: as
      `SplitMixtureOfExperts`.

  Call args:
    inputs: <float>[batch, d_in] f_s. scenario_ids: <int>[batch] in [0, S). training.
    return_experts: also return {"experts": per level <float>[batch, m + n, expert_dim] (a
      tensor for CGC, a tuple of L for PLE: `disagreement_loss` averages the levels),
      "gates": the scenario gates, <float32>[batch, m + n] (per level likewise)}.

  Returns:
    <float>[batch, output_dim]; with `return_experts`, (u_s, the dict).
  """

  def __init__(self, num_scenarios: int, output_dim: int, num_shared_experts: int = 2,
               num_specific_experts: int = 1, num_levels: int = 2, hidden_dim: int = 768,
               expert_dim: Optional[int] = None, dropout: float = 0.1,
               activation: Any = "swish", routing: str = "partition",
               kernel_initializer: Any = "glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    if min(num_scenarios, output_dim, num_levels, hidden_dim) < 1:
      raise ValueError("num_scenarios, output_dim, num_levels and hidden_dim must be >= 1")
    if num_shared_experts < 0 or num_specific_experts < 0 or (
        num_shared_experts + num_specific_experts < 1):
      raise ValueError("need at least one expert (num_shared_experts + num_specific_experts)")
    if routing not in ROUTINGS:
      raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
    self.num_scenarios, self.output_dim = int(num_scenarios), int(output_dim)
    self.num_shared_experts = int(num_shared_experts)
    self.num_specific_experts = int(num_specific_experts)
    self.num_levels, self.hidden_dim = int(num_levels), int(hidden_dim)
    self.expert_dim = int(expert_dim) if expert_dim else self.output_dim
    self.dropout, self.routing = float(dropout), routing
    self.activation = keras.activations.get(activation)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    n_mix = self.num_shared_experts + self.num_specific_experts

    def net(width: int, name: str) -> TwoLayerNetwork:
      return TwoLayerNetwork(self.hidden_dim, width, self.activation, self.dropout,
                             self.kernel_initializer, name=name, dtype=self.dtype_policy)

    S, L = self.num_scenarios, self.num_levels
    self.shared_experts = [[net(self.expert_dim, f"level_{l}_shared_{k}")
                            for k in range(self.num_shared_experts)] for l in range(L)]
    self.specific_experts = [[[net(self.expert_dim, f"level_{l}_scenario_{s}_expert_{k}")
                               for k in range(self.num_specific_experts)] for s in range(S)]
                             for l in range(L)]
    self.scenario_gates = [[net(n_mix, f"level_{l}_scenario_{s}_gate") for s in range(S)]
                           for l in range(L)]
    self.shared_gates = [net(n_mix, f"level_{l}_shared_gate") for l in range(L - 1)]
    self.towers = [net(self.output_dim, f"tower_{s}") for s in range(S)]

  def call(self, inputs: tf.Tensor, scenario_ids: tf.Tensor, training: Optional[bool] = None,
           return_experts: bool = False) -> Union[tf.Tensor, Tuple[tf.Tensor, Dict[str, Any]]]:
    x_s = x_sh = tf.cast(inputs, self.compute_dtype)
    ids = check_scenario_ids(scenario_ids, self.num_scenarios)
    level_experts, level_gates = [], []
    for l in range(self.num_levels):
      def own(s, xs, l=l):
        parts = [e(xs, training=training) for e in self.specific_experts[l][s]]
        logits = self.scenario_gates[l][s](xs, training=training)
        return (tf.stack(parts, axis=1) if parts else None, logits)

      if self.num_specific_experts:
        specific, logits = route_by_scenario(own, [x_s], ids, self.num_scenarios, self.routing)
      else:
        logits = route_by_scenario(lambda s, xs, l=l: own(s, xs)[1], [x_s], ids,
                                   self.num_scenarios, self.routing)
        specific = None
      shared = [e(x_sh, training=training) for e in self.shared_experts[l]]
      pieces = ([tf.stack(shared, axis=1)] if shared else []) + (
          [specific] if specific is not None else [])
      experts = tf.concat(pieces, axis=1)                                   # [b, m + n, d_e]
      gates = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
      next_s = tf.einsum("bn,bnd->bd", tf.cast(gates, experts.dtype), experts)
      if l < self.num_levels - 1:
        shared_gates = tf.nn.softmax(
            tf.cast(self.shared_gates[l](x_sh, training=training), tf.float32), axis=-1)
        x_sh = tf.einsum("bn,bnd->bd", tf.cast(shared_gates, experts.dtype), experts)
      x_s = next_s
      level_experts.append(experts)
      level_gates.append(gates)
    out = route_by_scenario(lambda s, m: self.towers[s](m, training=training), [x_s], ids,
                            self.num_scenarios, self.routing)
    if return_experts:
      if self.num_levels == 1:
        return out, {"experts": level_experts[0], "gates": level_gates[0]}
      return out, {"experts": tuple(level_experts), "gates": tuple(level_gates)}
    return out

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_scenarios": self.num_scenarios,
            "output_dim": self.output_dim, "num_shared_experts": self.num_shared_experts,
            "num_specific_experts": self.num_specific_experts, "num_levels": self.num_levels,
            "hidden_dim": self.hidden_dim, "expert_dim": self.expert_dim,
            "dropout": self.dropout, "activation": keras.activations.serialize(self.activation),
            "routing": self.routing,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.utils.register_keras_serializable(package="tfrec")
class CustomizedGateControl(ProgressiveLayeredExtraction):
  """CGC over scenarios: `ProgressiveLayeredExtraction` with one level (module docstring), the
  "M5 w/ CGC" variant. Same arguments but `num_levels`; returns as its parent with L = 1."""

  def __init__(self, num_scenarios: int, output_dim: int, **kwargs):
    if kwargs.pop("num_levels", 1) != 1:
      raise ValueError("CustomizedGateControl has one level; use ProgressiveLayeredExtraction")
    super().__init__(num_scenarios, output_dim, num_levels=1, **kwargs)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    del config["num_levels"]
    return config


__all__ = ["CustomizedGateControl", "ProgressiveLayeredExtraction"]
