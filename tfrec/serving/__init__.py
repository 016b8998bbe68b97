"""Serving: the SavedModel of a ranking model (`module.ServingModule`: signatures `rank`, `score`
= `serving_default`, requests checked before any lookup), of a retrieval model
(`retrieval.RetrievalServingModule`: `retrieve`, `encode_query`), their atomic export (`export`,
`export_run`), new items added to a retrieval export (`add_items`) and, with the optional faiss
extra, an approximate index beside it (`tfrec.serving.ann`, not imported here).
`python -m tfrec.export` is the command line."""

from tfrec.serving.add_items import NewItemError, add_items
from tfrec.serving.export import (check_export_dir, check_exportable, export, export_run,
                                  read_export_info, write_saved_model)
from tfrec.serving.module import (CANDIDATES, RANK, SCORE, SERVING_DEFAULT, ServingModule,
                                  keep_newest, rank_input_specs, score_input_specs)

__all__ = ["CANDIDATES", "NewItemError", "RANK", "SCORE", "SERVING_DEFAULT", "ServingModule",
           "add_items", "check_export_dir", "check_exportable", "export", "export_run",
           "keep_newest", "rank_input_specs", "read_export_info", "score_input_specs",
           "write_saved_model"]
