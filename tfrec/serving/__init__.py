"""Serving: the SavedModel of a ranking model (`module.ServingModule`: signatures `rank`, `score`
= `serving_default`, requests checked before any lookup) and its atomic export (`export`).
`python -m tfrec.export` is the command line."""

from tfrec.serving.export import check_export_dir, check_exportable, export, export_run
from tfrec.serving.module import (CANDIDATES, RANK, SCORE, SERVING_DEFAULT, ServingModule,
                                  keep_newest, rank_input_specs, score_input_specs)

__all__ = ["CANDIDATES", "RANK", "SCORE", "SERVING_DEFAULT", "ServingModule", "check_export_dir",
           "check_exportable", "export", "export_run", "keep_newest", "rank_input_specs", "score_input_specs"]
