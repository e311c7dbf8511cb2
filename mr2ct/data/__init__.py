"""Data stage (rules/data.smk): the phantom, cohort discovery and validation, NIfTI I/O,
preprocessing to training caches, and the cross-validation splits.
"""
