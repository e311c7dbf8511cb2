"""Import the mr2ct package of this workflow folder in a job.

Snakemake puts a script's own folder on ``sys.path``; importing this module puts the
workflow folder (its parent) first, so every job uses the package beside the Snakefile
that planned it, installed or not, locally, in a conda environment or on a cluster node.
"""

import sys
from pathlib import Path

WORKFLOW = str(Path(__file__).resolve().parents[1])
if WORKFLOW not in sys.path:
    sys.path.insert(0, WORKFLOW)
