"""Visual Program Distillation."""
