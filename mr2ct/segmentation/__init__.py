"""Segmentation stage (rules/segment.smk): the CT U-Net trained on real CT and applied to
real and synthetic CT.
"""
