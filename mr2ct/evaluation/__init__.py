"""Evaluation stage (rules/evaluate.smk): image and segmentation metrics, scoring jobs, and
the statistics behind every verdict.
"""
