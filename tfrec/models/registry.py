"""Name -> (model class, preset arguments), so that `--model=NAME` picks a model.

One class can serve several registered names with different presets (BST and Cross-BST are one
class with different `domains`), as TFRS builds DLRM and DCN from one ranking class. Registering
a name twice is an error; an unknown name lists the known ones.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Dict, List, Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Entry:
  cls: type
  preset: Mapping[str, Any]
  doc: str


_ENTRIES: Dict[str, Entry] = {}


def register(name: str, cls: type, doc: str, **preset: Any) -> None:
  """Registers `cls` under `name`; `preset` overrides the class defaults for this name."""
  if name in _ENTRIES:
    raise ValueError(f"model {name!r} is registered twice")
  unknown = set(preset) - set(accepted_args(cls))
  if unknown:
    raise TypeError(f"model {name!r}: {cls.__name__} takes no arguments {sorted(unknown)}")
  _ENTRIES[name] = Entry(cls, dict(preset), doc)


def get(name: str) -> Entry:
  _load_builtin()
  try:
    return _ENTRIES[name]
  except KeyError:
    raise KeyError(f"unknown model {name!r}; known models: {', '.join(names())}. A model "
                   "defined outside tfrec.models must be imported before it is named.") from None


def record_kind(name: str) -> str:
  """The record kind model `name` trains on: "ranking" (every `RankingModel`, which scores
  (user, candidate) pairs, and pre-training models that read the same records, such as
  BERT4SessRec's), or another kind such as "ccl_pair" for CCL."""
  return getattr(get(name).cls, "RECORD_KIND", "ranking")


def names(record_kind: Optional[str] = None) -> List[str]:
  """Registered names, all or those of one record kind (`names("ranking")`: the rankers and
  the pre-training models that train on ranking records; `issubclass(get(n).cls, RankingModel)`
  tells them apart)."""
  _load_builtin()
  return sorted(n for n in _ENTRIES if record_kind is None
                or getattr(_ENTRIES[n].cls, "RECORD_KIND", "ranking") == record_kind)


def accepted_args(cls: type) -> Tuple[str, ...]:
  """Keyword arguments of `cls.__init__`, including those its base classes take."""
  args = []
  for klass in cls.__mro__:
    if "__init__" not in vars(klass) or klass.__module__.startswith(("tf_keras", "keras")):
      continue
    for p in inspect.signature(klass.__init__).parameters.values():
      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
        args.append(p.name)
  return tuple(dict.fromkeys(args))


def build(name: str, **kwargs: Any):
  """Builds model `name`: class defaults < preset < `kwargs` (None values are ignored).

  Raises:
    TypeError: an argument the model does not take (so a misspelt option is never ignored).
  """
  entry = get(name)
  given = {k: v for k, v in kwargs.items() if v is not None}
  unknown = set(given) - set(accepted_args(entry.cls))
  if unknown:
    raise TypeError(f"model {name!r} ({entry.cls.__name__}) takes no arguments "
                    f"{sorted(unknown)}; it takes {sorted(accepted_args(entry.cls))}")
  return entry.cls(**{**entry.preset, **given})


def describe() -> str:
  """One line per registered model (for --helpfull and the README)."""
  return "\n".join(f"  {n}: {get(n).doc}" for n in names())


def _load_builtin() -> None:
  import tfrec.models  # noqa: F401  (registers the built-in models)
