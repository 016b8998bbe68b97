"""Ranking models, retrieval models (two towers on matching records) and the pre-training models (CCL, DUAL), one file per paper model or baseline, composed from `tfrec.layers`.

`registry.build(name, **kwargs)` builds a model by its registered name (`--model=NAME`).
"""

from tfrec.models import registry
from tfrec.models.aden import ADEN
from tfrec.models.atrank import ATRank
from tfrec.models.base import RankingModel
from tfrec.models.bert4sessrec import BERT4SessRec, BERT4SessRecPretrain
from tfrec.models.bpr import BPR
from tfrec.models.bst import BST
from tfrec.models.bst_two_tower import BSTTwoTower
from tfrec.models.ccl import CCL
from tfrec.models.cl4srec import CL4SRec
from tfrec.models.cmf import CMF
from tfrec.models.comirec import ComiRecSA
from tfrec.models.conet import CoNet
from tfrec.models.couple import COUPLE
from tfrec.models.deepconn import DeepCoNN
from tfrec.models.dien import DIEN
from tfrec.models.din import DIN
from tfrec.models.dssm import DSSM
from tfrec.models.dual import DUAL
from tfrec.models.gru4rec import GRU4Rec, GRU4RecPlus
from tfrec.models.ican import ICAN
from tfrec.models.lstm import LSTMRanker
from tfrec.models.m5 import M5
from tfrec.models.mf import MF
from tfrec.models.minet import MiNet
from tfrec.models.ncf import NCF
from tfrec.models.pdn import PDN
from tfrec.models.pinet import PiNet
from tfrec.models.sasrec import SASRec
from tfrec.models.sdm import SDM
from tfrec.models.semi import SEMI
from tfrec.models.thacil import THACIL
from tfrec.models.youtube_dnn import YouTubeDNN
from tfrec.models.youtubenet import YouTubeNet

__all__ = ["ADEN", "ATRank", "BERT4SessRec", "BERT4SessRecPretrain", "BPR", "BST", "BSTTwoTower", "CCL", "CL4SRec", "CMF", "COUPLE", "CoNet", "ComiRecSA", "DeepCoNN", "DIEN", "DIN", "DSSM", "DUAL", "GRU4Rec", "GRU4RecPlus", "ICAN", "LSTMRanker", "M5", "MF", "MiNet",
           "NCF", "PDN", "PiNet", "RankingModel", "SASRec", "SDM", "SEMI", "THACIL", "YouTubeDNN", "YouTubeNet",
           "registry"]
