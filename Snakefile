# mr2ct: MR-to-CT synthesis from unpaired data (Hiasa et al. 2018, arXiv 1803.06629).
# Run:   snakemake --profile profiles/local             (default config.yaml: phantom cohort)
#        snakemake --profile profiles/local --configfile configs/tiny.yaml
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


# With --software-deployment-method apptainer every job runs in this image (build it once:
# `apptainer build envs/mr2ct.sif envs/mr2ct.def`, README "A container for clusters").
container: f"{workflow.basedir}/envs/mr2ct.sif"


include: "rules/common.smk"


report: front_page()


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/segment.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
