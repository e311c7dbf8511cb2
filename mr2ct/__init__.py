"""mr2ct: reproducible MR-to-CT synthesis from unpaired data.

Reproduces Hiasa et al. 2018 (arXiv 1803.06629): CycleGAN with and without the
gradient-consistency loss, as a function of training-set size, and the use of
synthetic CT for downstream segmentation.
"""

__version__ = "0.1.0"
