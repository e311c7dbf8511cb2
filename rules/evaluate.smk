# Experiment 1: synthesis accuracy of every run, the reference predictions, the aggregated table.


rule synthesis_metrics:
    input:
        unpack(test_references),
        synthetic=run_path("synthetic_ct"),
    output:
        run_path("metrics/synthesis") + ".csv",
    log:
        run_path("synthesis_metrics", root=LOGS) + ".log",
    benchmark:
        run_path("synthesis_metrics", root=BENCH) + ".tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        subjects=test_subjects,
        band_mm=config["evaluation"]["boundary_band_mm"],
    script:
        "../workflow_scripts/synthesis_metrics.py"


rule reference_metrics:
    input:
        unpack(test_references),
        unpack(baseline_inputs),
    output:
        f"{RESULTS}/metrics/synthesis/{{size}}/references/fold{{fold}}.csv",
    log:
        f"{LOGS}/reference_metrics/{{size}}/fold{{fold}}.log",
    benchmark:
        f"{BENCH}/reference_metrics/{{size}}/fold{{fold}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        subjects=baseline_subjects,
        band_mm=config["evaluation"]["boundary_band_mm"],
    script:
        "../workflow_scripts/reference_metrics.py"


rule synthesis_table:
    input:
        all_run_tables("metrics/synthesis"),
        expand(f"{RESULTS}/metrics/synthesis/{{size}}/references/fold{{fold}}.csv", size=SIZES, fold=FOLD_IDS),
    output:
        report(
            f"{RESULTS}/tables/synthesis_metrics.csv",
            caption="../report/synthesis_metrics.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/synthesis_table.log",
    benchmark:
        f"{BENCH}/synthesis_table.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        kind="synthesis",
    script:
        "../workflow_scripts/concat_table.py"
