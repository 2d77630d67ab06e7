"""Distillation: datasets, metrics, program synthesis, rationale rewriting, training.

* :mod:`vpd.distill.datasets`: benchmarks as records (:func:`load_dataset`, :func:`from_hf`);
* :mod:`vpd.distill.metrics`: the benchmarks' official answer metrics (:func:`score`);
* :mod:`vpd.distill.synthesis`: k programs per labelled question, run and verified
  (:func:`synthesize`, ``vpd synthesize``), into a resumable run directory
  (:mod:`vpd.distill.runs`);
* :mod:`vpd.distill.rewriter`: verified programs' traces as rationales (:func:`rewrite_run`,
  ``vpd rewrite``);
* :mod:`vpd.distill.export`: the training set (:func:`export_run`, ``vpd export``);
* :mod:`vpd.distill.training`: LoRA step-by-step distillation of a student (:func:`train`,
  :class:`TrainConfig`, ``vpd train``);
* :mod:`vpd.distill.student`: the distilled model answering (:class:`Student`, ``vpd ask``);
* :mod:`vpd.distill.evaluate`: teacher and students scored side by side (:func:`evaluate`,
  ``vpd eval``).

Importing it needs neither torch nor transformers: they load when training or a student starts.
"""

from vpd.distill.datasets import DATASET_FORMATS, BadRow, Dataset, Example, from_hf, load_dataset
from vpd.distill.evaluate import SystemSummary, evaluate, summarize_eval
from vpd.distill.export import ExportSummary, export_run
from vpd.distill.metrics import METRICS, score
from vpd.distill.rewriter import LLMRewriter, RewriteSummary, TemplateRewriter, check_rationale, rewrite_run
from vpd.distill.runs import read_records
from vpd.distill.student import Student, StudentAnswer
from vpd.distill.synthesis import SynthesisProgress, SynthesisSummary, summarize, synthesize
from vpd.distill.training import TrainConfig, TrainResult, train

__all__ = [
    "DATASET_FORMATS",
    "METRICS",
    "BadRow",
    "Dataset",
    "Example",
    "ExportSummary",
    "LLMRewriter",
    "RewriteSummary",
    "Student",
    "StudentAnswer",
    "SynthesisProgress",
    "SynthesisSummary",
    "SystemSummary",
    "TemplateRewriter",
    "TrainConfig",
    "TrainResult",
    "check_rationale",
    "evaluate",
    "export_run",
    "from_hf",
    "load_dataset",
    "read_records",
    "rewrite_run",
    "score",
    "summarize",
    "summarize_eval",
    "synthesize",
    "train",
]
