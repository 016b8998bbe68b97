"""Ranking models, retrieval models (two towers on matching records) and the CCL pre-training model, one file per paper model or baseline, composed from `tfrec.layers`.

`registry.build(name, **kwargs)` builds a model by its registered name (`--model=NAME`).
"""

from tfrec.models import registry
from tfrec.models.base import RankingModel
from tfrec.models.bst import BST
from tfrec.models.ccl import CCL
from tfrec.models.din import DIN
from tfrec.models.semi import SEMI
from tfrec.models.youtube_dnn import YouTubeDNN
from tfrec.models.youtubenet import YouTubeNet

__all__ = ["BST", "CCL", "DIN", "RankingModel", "SEMI", "YouTubeDNN", "YouTubeNet", "registry"]
