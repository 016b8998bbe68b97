"""`--model_args=name=value,...`: any argument a registered model's constructor takes, typed from
its signature and checked against the registry.

    --model_args=dim=32,num_heads=4,mlp_units=[64,32],ff_dim=none
    --model_args=dropout=0          (a later flag, e.g. on the command line, wins per name)

Values are converted by the constructor's type annotation (or its default's type): int, float,
bool (true/false/1/0/yes/no), str, Optional[...] ("none" -> None), and sequences of those
written in brackets ("[64,32]"; a single value without brackets is a one-element list).

Which names are accepted:
  * a name the chosen model takes: converted and passed;
  * a name some OTHER registered model takes (e.g. num_heads, set by a shared flagfile, for
    DIN): skipped, and said so (logged and recorded in the run's config.json);
  * a name no registered model takes: an error that lists the chosen model's arguments.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from typing import Any, Dict, List, Sequence, Tuple

from tfrec.models import registry

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
# Arguments every model gets from the dataset (sizes) or the data options, never from a flag.
FROM_DATASET = ("num_items", "num_categories", "visual_dim", "num_tokens", "max_seq_len",
                "user_feature_sizes", "pre_extracted_dim", "num_tags")


def split_entries(text: str) -> List[str]:
  """"a=1,b=[2,3],c=x" -> ["a=1", "b=[2,3]", "c=x"] (commas inside brackets stay)."""
  out, depth, start = [], 0, 0
  for i, ch in enumerate(text):
    if ch == "[":
      depth += 1
    elif ch == "]":
      depth -= 1
      if depth < 0:
        raise ValueError(f"--model_args={text}: unbalanced ']'")
    elif ch == "," and depth == 0:
      out.append(text[start:i])
      start = i + 1
  if depth:
    raise ValueError(f"--model_args={text}: unbalanced '['")
  out.append(text[start:])
  return [e.strip() for e in out if e.strip()]


def parse(values: Sequence[str]) -> Dict[str, str]:
  """The repeated flag's values, in order -> {name: value text} (a later name wins)."""
  raw: Dict[str, str] = {}
  for text in values or ():
    for entry in split_entries(text):
      name, sep, value = entry.partition("=")
      if not sep or not name.strip():
        raise ValueError(f"--model_args: {entry!r} is not name=value")
      raw[name.strip()] = value.strip()
  return raw


def arg_types(cls: type) -> Dict[str, Any]:
  """name -> annotation (or the default's type) of every argument `cls` takes."""
  types: Dict[str, Any] = {}
  for klass in reversed(cls.__mro__):
    if "__init__" not in vars(klass) or klass.__module__.startswith(("tf_keras", "keras")):
      continue
    init = vars(klass)["__init__"]
    try:
      hints = typing.get_type_hints(init)
    except Exception:  # noqa: BLE001  (an unresolvable annotation: fall back to defaults)
      hints = {}
    for p in inspect.signature(init).parameters.values():
      if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.name in ("self", "name"):
        continue
      if p.name in hints:
        types[p.name] = hints[p.name]
      elif p.default is not inspect.Parameter.empty and p.default is not None:
        types[p.name] = type(p.default)
      else:
        types[p.name] = str
  return types


def _scalar(name: str, text: str, kind: Any) -> Any:
  if kind is bool:
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise ValueError(f"--model_args: {name}={text} is not a bool (true/false)")
  if kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      raise ValueError(f"--model_args: {name}={text} is not a{'n int' if kind is int else ' float'}"
                       ) from None
  return text


def convert(name: str, text: str, kind: Any) -> Any:
  """The value text of argument `name` as `kind` (module docstring)."""
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin is typing.Union:  # Optional[X] (and unions with None)
    if text.lower() == "none" and type(None) in args:
      return None
    inner = [a for a in args if a is not type(None)]
    return convert(name, text, inner[0] if inner else str)
  if kind in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
    item = args[0] if args else str
    body = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    return [convert(name, x.strip(), item) for x in body.split(",") if x.strip()]
  if kind in (int, float, bool):
    return _scalar(name, text, kind)
  return text


def resolve(model: str, raw: Dict[str, str]) -> Tuple[Dict[str, Any], Tuple[str, ...]]:
  """Typed arguments of `model` from `parse`'s output, and the names skipped (module docstring).

  Raises:
    KeyError: unknown model.
    ValueError: a name no registered model takes (listing the chosen model's arguments), an
      argument that comes from the dataset, or a value of the wrong type.
  """
  entry = registry.get(model)
  own = arg_types(entry.cls)
  dataset = sorted(set(raw) & set(FROM_DATASET))
  if dataset:
    raise ValueError(f"--model_args: {dataset} come from the dataset (and --max_seq_len), not "
                     "from model arguments")
  anywhere = set()
  for name in registry.names():
    anywhere |= set(arg_types(registry.get(name).cls))
  unknown = sorted(set(raw) - anywhere)
  if unknown:
    valid = sorted(set(own) - set(FROM_DATASET))
    raise ValueError(f"--model_args: no registered model takes {unknown}; {model} takes "
                     f"{', '.join(valid)}")
  kwargs = {n: convert(n, v, own[n]) for n, v in raw.items() if n in own}
  skipped = tuple(sorted(n for n in raw if n not in own))
  return kwargs, skipped


__all__ = ["FROM_DATASET", "arg_types", "convert", "parse", "resolve", "split_entries"]
