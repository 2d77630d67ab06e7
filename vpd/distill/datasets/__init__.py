"""Benchmarks as records: questions about images with their reference answers.

* :class:`Example` (one question), :class:`BadRow` (a row that could not be used) and
  :class:`Dataset` (the examples of a file, and its skipped rows);
* :func:`load_dataset`: vpd's JSONL format and the benchmarks' own files (VQAv2, OK-VQA,
  A-OKVQA, GQA, TallyQA, CLEVR, OctoTools), by :data:`DATASET_FORMATS` or detected;
* :func:`from_hf`: a Hugging Face ``datasets.Dataset`` (``datasets`` imported when called).

Images are referenced by path; nothing here reads pixels. Every example names its metric
(a key of :data:`vpd.distill.metrics.METRICS`), which that module computes.
"""

from vpd.distill.datasets.example import BadRow, Dataset, Example
from vpd.distill.datasets.hf import from_hf
from vpd.distill.datasets.load import DATASET_FORMATS, load_dataset

__all__ = ["DATASET_FORMATS", "BadRow", "Dataset", "Example", "from_hf", "load_dataset"]
