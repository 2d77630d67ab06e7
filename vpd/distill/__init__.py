"""Distillation: datasets, metrics, program synthesis, rationale rewriting, training.

* :mod:`vpd.distill.datasets`: benchmarks as records (:func:`load_dataset`, :func:`from_hf`);
* :mod:`vpd.distill.metrics`: the benchmarks' official answer metrics (:func:`score`);
* :mod:`vpd.distill.synthesis`: k programs per labelled question, run and verified
  (:func:`synthesize`, ``vpd synthesize``), into a resumable run directory
  (:mod:`vpd.distill.runs`).
"""

from vpd.distill.datasets import DATASET_FORMATS, BadRow, Dataset, Example, from_hf, load_dataset
from vpd.distill.metrics import METRICS, score
from vpd.distill.runs import read_records
from vpd.distill.synthesis import SynthesisProgress, SynthesisSummary, summarize, synthesize

__all__ = [
    "DATASET_FORMATS",
    "METRICS",
    "BadRow",
    "Dataset",
    "Example",
    "SynthesisProgress",
    "SynthesisSummary",
    "from_hf",
    "load_dataset",
    "read_records",
    "score",
    "summarize",
    "synthesize",
]
