"""Matmul FLOPs of a traced TensorFlow function, counted from its graph (for MFU figures).

    count = train_step_flops(model, (features, labels))   # one compiled Keras train step
    count = function_flops(fn, *args)                     # any function, traced once
    count.total, count.by_op, count.unknown

What is counted (the standard model-FLOP-utilisation convention: matrix products only):

  MatMul                 2 m k n (transpose_a / transpose_b respected)
  BatchMatMul[V2|V3]     2 batch m k n (adj_x / adj_y respected, batch dims broadcast)
  Einsum (two inputs)    2 x the product of the sizes of every index in the equation
  Conv2D/3D, depthwise   2 x output elements x window x input channels per group, and the same
                         for their input/filter gradients (counted from the output gradient)

Elementwise ops (activations, softmax, layer norm, bias adds, the optimizer's update), reductions,
gathers and one-input einsums (transposes, traces) are not counted. A multiply-add is 2 FLOPs.
Nothing here runs the function: shapes come from tracing, so every counted op needs static
shapes; one whose shapes are not known is listed in `unknown` instead of being guessed. Layers
that compute each distinct item of a batch once are traced per position here
(`tfrec.layers._utils.per_position_items`): model FLOPs, every position of every instance.

Function calls nested in the traced graph (PartitionedCall / StatefulPartitionedCall, or a node
whose op is a library function) are followed into their bodies in the graph's function library,
once per call. Control flow (If / While and their stateless forms) is not followed, since its trip
count is not static: such ops are listed in `unknown`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from tfrec.layers._utils import per_position_items

Shape = Optional[Tuple[Optional[int], ...]]  # None: unknown rank

_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")
_CONTROL_FLOW_OPS = ("If", "StatelessIf", "While", "StatelessWhile", "Case", "StatelessCase")
_MATMUL_OPS = ("MatMul", "_FusedMatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3",
               "Einsum")
_CONV_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative")
_CONV_GRAD_OPS = ("Conv2DBackpropInput", "Conv2DBackpropFilter", "Conv3DBackpropInputV2",
                  "Conv3DBackpropFilterV2", "DepthwiseConv2dNativeBackpropInput",
                  "DepthwiseConv2dNativeBackpropFilter")
COUNTED_OPS = _MATMUL_OPS + _CONV_OPS + _CONV_GRAD_OPS

# Inside a function body an input is named "node:output_arg:index". For ops with a single output
# argument (nearly all; list outputs included) the flat output index is `index`; ops with several
# output arguments are listed here with their arguments in order (each a single tensor).
_OUTPUT_ARGS = {
    "FusedBatchNorm": ("y", "batch_mean", "batch_variance", "reserve_space_1",
                       "reserve_space_2"),
    "FusedBatchNormV2": ("y", "batch_mean", "batch_variance", "reserve_space_1",
                         "reserve_space_2"),
    "FusedBatchNormV3": ("y", "batch_mean", "batch_variance", "reserve_space_1",
                         "reserve_space_2", "reserve_space_3"),
    "FusedBatchNormGradV3": ("x_backprop", "scale_backprop", "offset_backprop",
                             "reserve_space_4", "reserve_space_5"),
    "SoftmaxCrossEntropyWithLogits": ("loss", "backprop"),
    "SparseSoftmaxCrossEntropyWithLogits": ("loss", "backprop"),
    "TopKV2": ("values", "indices"),
    "Unique": ("y", "idx"),
    "UniqueV2": ("y", "idx"),
    "BroadcastGradientArgs": ("r0", "r1"),
    "Qr": ("q", "r"),
    "SelfAdjointEigV2": ("e", "v"),
    "Svd": ("s", "u", "v"),
}


@dataclasses.dataclass(frozen=True)
class FlopCount:
  """Matmul FLOPs of one traced function.

  Attributes:
    total: FLOPs of all counted ops (a multiply-add = 2).
    by_op: FLOPs per op type.
    ops: how many ops of each counted type were found.
    unknown: "name (type)" of the ops that would count but whose shapes are not static, and of
      control-flow ops that were not followed.
  """

  total: int
  by_op: Mapping[str, int]
  ops: Mapping[str, int]
  unknown: Tuple[str, ...]


# ------------------------------------------------------------------ per-op formulas


def matmul_flops(a: Sequence[int], b: Sequence[int], transpose_a: bool = False,
                 transpose_b: bool = False) -> int:
  """2 m k n for [m, k] x [k, n] (before the transposes), batch dims broadcast and multiplied."""
  a, b = list(a), list(b)
  if len(a) < 2 or len(b) < 2:
    raise ValueError(f"matmul operands need rank >= 2, got {a} and {b}")
  m, k = (a[-1], a[-2]) if transpose_a else (a[-2], a[-1])
  k_b, n = (b[-1], b[-2]) if transpose_b else (b[-2], b[-1])
  if k != k_b:
    raise ValueError(f"contraction sizes differ: {a} x {b} (transposes {transpose_a}, "
                     f"{transpose_b})")
  batch = _broadcast(a[:-2], b[:-2])
  return 2 * math.prod(batch) * m * k * n


def einsum_flops(equation: str, shapes: Sequence[Sequence[int]]) -> int:
  """2 x the product of every index's size, for a two-operand einsum; 0 for one operand.

  A two-operand contraction computes one multiply-add per combination of all its indices
  (kept, batch and summed). "..." is expanded (broadcast) into anonymous indices.
  """
  inputs, _, _ = equation.replace(" ", "").partition("->")
  terms = inputs.split(",")
  if len(terms) != len(shapes):
    raise ValueError(f"einsum {equation!r} has {len(terms)} operands, got {len(shapes)} shapes")
  if len(terms) == 1:
    return 0
  if len(terms) != 2:
    raise ValueError(f"einsum ops take one or two operands, got {equation!r}")
  ellipses, explicit = [], []
  for term, shape in zip(terms, shapes):
    labels = term.replace("...", "")
    extra = len(shape) - len(labels)
    if extra < 0 or (extra and "..." not in term):
      raise ValueError(f"einsum term {term!r} does not match shape {list(shape)}")
    start = term.find("...")
    if start >= 0:
      ellipses.append(list(shape[start:start + extra]))
      shape = list(shape[:start]) + list(shape[start + extra:])
    explicit.append((labels, shape))
  sizes: Dict[str, int] = {}
  for i, size in enumerate(_broadcast(*ellipses)):
    sizes[f"...{i}"] = size
  for labels, dims in explicit:
    for label, size in zip(labels, dims):
      sizes[label] = max(sizes.get(label, 1), int(size))
  return 2 * math.prod(sizes.values())


def conv_flops(output_or_grad: Sequence[int], filter_shape: Sequence[int],
               depthwise: bool = False) -> int:
  """2 x output elements x spatial window x input channels per group (none for depthwise).

  For the input and filter gradients of a convolution pass the output gradient's shape: each
  costs as much as the forward convolution.
  """
  window = math.prod(filter_shape[:-2])
  per_output = window if depthwise else window * filter_shape[-2]
  return 2 * math.prod(output_or_grad) * per_output


def _broadcast(*shapes: Sequence[int]) -> List[int]:
  rank = max((len(s) for s in shapes), default=0)
  out = []
  for i in range(rank):
    dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
    out.append(max(dims))
  return out


# ------------------------------------------------------------------ graph walking


def _shape(proto: Any) -> Shape:
  if proto.unknown_rank:
    return None
  return tuple(d.size if d.size >= 0 else None for d in proto.dim)


def _static(shape: Shape) -> bool:
  return shape is not None and all(d is not None for d in shape)


class _Counter:
  """Sums counted ops over graph nodes and the function bodies their calls reach.

  A body's count is computed once per function name and added once per call.
  """

  def __init__(self, library: Mapping[str, Any], cache: Dict[str, "_Counter"]):
    self.library = library
    self.cache = cache
    self.by_op: Dict[str, int] = collections.Counter()
    self.ops: Dict[str, int] = collections.Counter()
    self.unknown: List[str] = []

  def add(self, other: "_Counter", prefix: str) -> None:
    """Adds a body's counts, its unknown ops named under `prefix` (the call)."""
    self.by_op.update(other.by_op)
    self.ops.update(other.ops)
    self.unknown.extend(prefix + u for u in other.unknown)

  def count_nodes(self, nodes: Sequence[Any], shapes_of: Callable[[str], Shape],
                  prefix: str = "") -> None:
    """Counts `nodes` (NodeDefs), resolving an input reference's shape with `shapes_of`."""
    for node in nodes:
      op = node.op
      if op in _CALL_OPS or op in self.library:
        self._count_call(node.attr["f"].func.name if op in _CALL_OPS else op,
                         f"{prefix}{node.name}/")
      elif op in _CONTROL_FLOW_OPS:
        self.unknown.append(f"{prefix}{node.name} ({op}: control flow not followed)")
      elif op in COUNTED_OPS:
        ins = [shapes_of(ref) for ref in node.input if not ref.startswith("^")]
        outs = [_shape(s) for s in node.attr["_output_shapes"].list.shape]
        flops = self._op_flops(node, ins, outs)
        if flops is None:
          self.unknown.append(f"{prefix}{node.name} ({op})")
        else:
          self.by_op[op] += flops
          self.ops[op] += 1

  def _count_call(self, fname: str, prefix: str) -> None:
    fdef = self.library.get(fname)
    if fdef is None:
      self.unknown.append(f"{prefix[:-1]} (call of {fname}: not in the function library)")
      return
    if fname not in self.cache:
      body = _Counter(self.library, self.cache)
      body.count_nodes(fdef.node_def, _function_shapes(fdef))
      self.cache[fname] = body
    self.add(self.cache[fname], prefix)

  @staticmethod
  def _op_flops(node: Any, ins: List[Shape], outs: List[Shape]) -> Optional[int]:
    op, attr = node.op, node.attr
    try:
      if op in ("MatMul", "_FusedMatMul"):
        if not (_static(ins[0]) and _static(ins[1])):
          return None
        return matmul_flops(ins[0], ins[1], attr["transpose_a"].b, attr["transpose_b"].b)
      if op.startswith("BatchMatMul"):
        if not (_static(ins[0]) and _static(ins[1])):
          return None
        return matmul_flops(ins[0], ins[1], attr["adj_x"].b, attr["adj_y"].b)
      if op == "Einsum":
        if not all(_static(s) for s in ins):
          return None
        return einsum_flops(attr["equation"].s.decode(), ins)
      depthwise = op.startswith("Depthwise")
      if op in _CONV_OPS:
        grad, filt = outs[0], ins[1]
      elif op.endswith("BackpropInput") or op.endswith("BackpropInputV2"):
        grad, filt = ins[2], ins[1]
      else:  # filter gradient: its output has the filter's shape
        grad, filt = ins[2], outs[0]
      if not (_static(grad) and _static(filt)):
        return None
      return conv_flops(grad, filt, depthwise=depthwise)
    except (ValueError, IndexError):
      return None  # inconsistent shapes: do not guess


def _function_shapes(fdef: Any) -> Callable[[str], Shape]:
  """Input reference -> shape inside a FunctionDef body ("arg" or "node:output_arg:i")."""
  args = {}
  for i, arg in enumerate(fdef.signature.input_arg):
    shapes = fdef.arg_attr[i].attr["_output_shapes"].list.shape if i in fdef.arg_attr else []
    args[arg.name] = _shape(shapes[0]) if shapes else None
  nodes = {n.name: n for n in fdef.node_def}

  def shape_of(ref: str) -> Shape:
    parts = ref.split(":")
    if len(parts) == 1:
      return args.get(ref)
    node = nodes.get(parts[0])
    if node is None or len(parts) != 3:
      return None
    index = int(parts[2])
    order = _OUTPUT_ARGS.get(node.op)
    if order is not None:
      if parts[1] not in order:
        return None
      index += order.index(parts[1])
    shapes = node.attr["_output_shapes"].list.shape
    return _shape(shapes[index]) if index < len(shapes) else None

  return shape_of


def graph_flops(graph: tf.Graph) -> FlopCount:
  """Counts the matmul FLOPs of a graph (a `tf.Graph` or a concrete function's `.graph`)."""
  graph_def = graph.as_graph_def(add_shapes=True)
  shapes = {}
  for node in graph_def.node:
    shapes[node.name] = [_shape(s) for s in node.attr["_output_shapes"].list.shape]

  def shape_of(ref: str) -> Shape:
    name, _, index = ref.partition(":")
    outs = shapes.get(name, [])
    i = int(index) if index else 0
    return outs[i] if i < len(outs) else None

  library = {f.signature.name: f for f in graph_def.library.function}
  counter = _Counter(library, {})
  counter.count_nodes(graph_def.node, shape_of)
  by_op = dict(counter.by_op)
  return FlopCount(total=sum(by_op.values()), by_op=by_op, ops=dict(counter.ops),
                   unknown=tuple(counter.unknown))


def function_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FlopCount:
  """Traces `fn(*args, **kwargs)` once (a `tf.function` or a plain callable) and counts it.

  Args may be tensors or `tf.TensorSpec`s with static shapes.
  """
  if not hasattr(fn, "get_concrete_function"):
    fn = tf.function(fn)
  with per_position_items():  # every position counted, static shapes (layers/_utils.py)
    return graph_flops(fn.get_concrete_function(*args, **kwargs).graph)


def train_step_flops(model: Any, data: Any) -> FlopCount:
  """FLOPs of one `model.train_step(data)` of a compiled Keras model: forward, backward, update.

  The step is traced, not run: the model's weights and optimizer state do not change (the
  optimizer may create its slot variables).
  """
  return function_flops(model.train_step, data)


__all__ = ["COUNTED_OPS", "FlopCount", "conv_flops", "einsum_flops", "function_flops",
           "graph_flops", "matmul_flops", "train_step_flops"]
