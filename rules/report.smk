# Statistics, summaries and every figure of the paper (PNG + PDF), wrapped for `snakemake --report`.


rule statistics:
    input:
        synthesis=f"{RESULTS}/tables/synthesis_metrics.csv",
        segmentation=SEGMENTATION_TABLE,
    output:
        statistics=report(f"{RESULTS}/tables/statistics.csv", caption="../report/statistics.rst", category="Tables"),
        summary=report(f"{RESULTS}/tables/summary.csv", caption="../report/summary.rst", category="Tables"),
        markdown=f"{RESULTS}/tables/summary.md",
        findings=f"{RESULTS}/tables/findings.md",
        verdict=f"{RESULTS}/tables/findings.rst",
    log:
        f"{LOGS}/statistics.log",
    benchmark:
        f"{BENCH}/statistics.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        seed=config["seed"],
    script:
        "../workflow_scripts/statistics.py"


rule figures:
    input:
        synthesis=f"{RESULTS}/tables/synthesis_metrics.csv",
        segmentation=SEGMENTATION_TABLE,
        losses=all_runs("models", "losses.tsv"),
    output:
        mae=figure(FIGURE_STEMS["mae"], "mae_vs_size"),
        psnr=figure(FIGURE_STEMS["psnr"], "psnr_vs_size"),
        ssim=figure(FIGURE_STEMS["ssim"], "ssim_vs_size"),
        boundary=figure(FIGURE_STEMS["mae_boundary"], "boundary_mae_vs_size"),
        curves=figure(FIGURE_STEMS["training_curves"], "training_curves"),
        dice=figure(FIGURE_STEMS["dice"], "dice_by_structure") if LABELLED else [],
        surface=figure(FIGURE_STEMS["surface_distances"], "surface_distance_by_structure") if LABELLED else [],
        pdfs=expand(f"{FIGURES}/{{stem}}.pdf", stem=TABLE_FIGURES),
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=config["seed"],
        runs=RUNS,
    script:
        "../workflow_scripts/figures.py"


rule qualitative_figure:
    input:
        unpack(qualitative_subject),
        synthetic=qualitative_inputs,
    output:
        png=figure("qualitative_hip", "qualitative"),
        pdf=f"{FIGURES}/qualitative_hip.pdf",
    log:
        f"{LOGS}/qualitative_figure.log",
    benchmark:
        f"{BENCH}/qualitative_figure.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        models=QUALITATIVE_MODELS,
        subject=FOLDS[0].test[0],
    script:
        "../workflow_scripts/qualitative_figure.py"


rule provenance_summary:
    input:
        [f for f in get_final_output() if not f.endswith("provenance_summary.csv")],
    output:
        report(
            f"{RESULTS}/tables/provenance_summary.csv",
            caption="../report/provenance_summary.rst",
            category="Provenance",
        ),
    log:
        f"{LOGS}/provenance_summary.log",
    benchmark:
        f"{BENCH}/provenance_summary.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../workflow_scripts/provenance_summary.py"
