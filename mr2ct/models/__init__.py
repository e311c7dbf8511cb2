"""Synthesis models (rules/train.smk): networks, losses, the training loop and its resumable
checkpoints, device setup, and inference with a trained generator.
"""
