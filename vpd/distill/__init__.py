"""Distillation: datasets, metrics, program synthesis, rationale rewriting, training."""

__all__: list[str] = []
