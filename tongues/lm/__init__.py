"""Pretraining: the training loop and its parts, checkpoints, export, model card, launch scripts,
and the scaling sweep (which trains runs with the same loop)."""
