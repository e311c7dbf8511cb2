# Data stage: phantom cohort (when configured), validation, preprocessing, splits.

if COHORT.generated:

    rule phantom_subject:
        output:
            mr=f"{RESULTS}/cohort/{{subject}}/mr.nii.gz",
            ct=f"{RESULTS}/cohort/{{subject}}/ct.nii.gz",
            mask=f"{RESULTS}/cohort/{{subject}}/mask.nii.gz",
            labels=f"{RESULTS}/cohort/{{subject}}/labels.nii.gz",
        log:
            f"{LOGS}/phantom/{{subject}}.log",
        benchmark:
            f"{BENCH}/phantom/{{subject}}.tsv"
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=1500,
            runtime=10,
        params:
            seed=config["seed"],
            index=lambda wc: SUBJECTS.index(wc.subject),
            matrix=config["data"]["phantom"]["matrix"],
            spacing=config["data"]["phantom"]["spacing"],
        script:
            "../workflow_scripts/phantom_subject.py"

    rule phantom_tables:
        output:
            subjects=f"{RESULTS}/cohort/subjects.tsv",
            labels=f"{RESULTS}/cohort/labels.tsv",
        log:
            f"{LOGS}/phantom/tables.log",
        benchmark:
            f"{BENCH}/phantom/tables.tsv"
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=5,
        params:
            seed=config["seed"],
            n_subjects=len(SUBJECTS),
        script:
            "../workflow_scripts/phantom_tables.py"


# The validation report of every volume (a given cohort was already checked when the workflow
# was parsed, rules/common.smk); no job waits for it, so its rerun never reruns anything else.
rule validate_cohort:
    input:
        volumes=cohort_files,
    output:
        f"{RESULTS}/cohort/validation.tsv",
    log:
        f"{LOGS}/validate_cohort.log",
    benchmark:
        f"{BENCH}/validate_cohort.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        # which of the input volumes is which subject's MR, CT, mask and labels
        subjects=COHORT.files_by_subject(),
        labels_table=str(COHORT.labels_table) if COHORT.labels_table else "",
        tolerance_mm=config["data"]["geometry_tolerance_mm"],
        checks=config["data"]["checks"],
    script:
        "../workflow_scripts/validate_cohort.py"


rule preprocess:
    input:
        unpack(subject_files),
    output:
        f"{RESULTS}/preprocessed/{{subject}}.npz",
    log:
        f"{LOGS}/preprocess/{{subject}}.log",
    benchmark:
        f"{BENCH}/preprocess/{{subject}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        preprocess=config["preprocess"],
    script:
        "../workflow_scripts/preprocess.py"


rule splits:
    output:
        f"{RESULTS}/splits/splits.tsv",
    log:
        f"{LOGS}/splits.log",
    benchmark:
        f"{BENCH}/splits.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        subjects=SUBJECTS,
        # everything the table depends on, so that a changed seed or split setting rewrites it
        seed=config["seed"],
        splits=config["splits"],
    script:
        "../workflow_scripts/splits.py"
