# Data stage: phantom cohort (when configured); DICOM conversion, derived body masks and MR-to-CT
# registration (when the cohort needs them); validation, preprocessing, splits.

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


if DICOM_SERIES:

    rule convert_dicom:
        input:
            dicom_files,
        output:
            f"{RESULTS}/cohort/{{series}}.nii.gz",
        log:
            f"{LOGS}/convert_dicom/{{series}}.log",
        benchmark:
            f"{BENCH}/convert_dicom/{{series}}.tsv"
        wildcard_constraints:
            series=choices(DICOM_SERIES),
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            folder=lambda wc: str(DICOM_SERIES[wc.series].folder),
            uid=lambda wc: DICOM_SERIES[wc.series].uid or "",
            role=lambda wc: wc.series.rsplit("/", 1)[1],
        script:
            "../workflow_scripts/convert_dicom.py"


if DERIVED_MASKS:

    rule body_mask:
        input:
            ct=lambda wc: str(COHORT[wc.subject].ct),
        output:
            f"{RESULTS}/cohort/{{subject}}/mask.nii.gz",
        log:
            f"{LOGS}/body_mask/{{subject}}.log",
        benchmark:
            f"{BENCH}/body_mask/{{subject}}.tsv"
        wildcard_constraints:
            subject=choices(DERIVED_MASKS),
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        script:
            "../workflow_scripts/body_mask.py"


if REGISTRATION != "none":

    rule register_mr:
        input:
            mr=lambda wc: str(PREPARATION[wc.subject].unregistered_mr),
            ct=lambda wc: str(COHORT[wc.subject].ct),
        output:
            mr=f"{RESULTS}/registration/{{subject}}/mr.nii.gz",
            transform=f"{RESULTS}/registration/{{subject}}/transform.tfm",
            table=f"{RESULTS}/registration/{{subject}}/registration.tsv",
            qc=report(
                f"{RESULTS}/registration/{{subject}}/qc.png",
                caption="../report/registration_qc.rst",
                category="Registration",
                labels={"subject": "{subject}"},
            ),
        log:
            f"{LOGS}/register_mr/{{subject}}.log",
        benchmark:
            f"{BENCH}/register_mr/{{subject}}.tsv"
        conda:
            "../envs/data.yaml"
        threads: 1  # ITK's registration is deterministic on one thread only (mr2ct.data.registration)
        resources:
            mem_mb=3000,
            runtime=30,
        params:
            method=REGISTRATION,
            seed=config["seed"],
        script:
            "../workflow_scripts/register_mr.py"

    rule registration_table:
        input:
            expand(f"{RESULTS}/registration/{{subject}}/registration.tsv", subject=SUBJECTS),
        output:
            report(
                f"{RESULTS}/tables/registration.csv",
                caption="../report/registration.rst",
                category="Tables",
            ),
        log:
            f"{LOGS}/registration_table.log",
        benchmark:
            f"{BENCH}/registration_table.tsv"
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=5,
        script:
            "../workflow_scripts/registration_table.py"


if PREPARATION:

    # The full validation of a subject whose files jobs made (the workflow's parse could judge only
    # what the cohort gives, mr2ct.data.validation.check_sources); its preprocessing waits for it.
    rule validate_prepared:
        input:
            unpack(prepared_files),
        output:
            f"{RESULTS}/cohort/{{subject}}/validation.tsv",
        log:
            f"{LOGS}/validate_prepared/{{subject}}.log",
        benchmark:
            f"{BENCH}/validate_prepared/{{subject}}.tsv"
        wildcard_constraints:
            subject=choices(PREPARATION),
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            subjects=lambda wc: {wc.subject: COHORT.files_by_subject()[wc.subject]},
            labels_table=str(COHORT.labels_table) if COHORT.labels_table else "",
            tolerance_mm=config["data"]["geometry_tolerance_mm"],
            checks=config["data"]["checks"],
        script:
            "../workflow_scripts/validate_cohort.py"


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
        # the config section, which PreprocessSettings.from_config reads (train and segmentation jobs get
        # asdict of their settings; turning this into one would change the recorded params and rerun
        # every finished result)
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
