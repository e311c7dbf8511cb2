# Experiment 2: a CT segmentation network per fold (real CT), applied to real and synthetic CT.


rule train_segmentation:
    input:
        caches=lambda wc: preprocessed(FOLDS[int(wc.fold)].pool),
        validation=lambda wc: preprocessed(FOLDS[int(wc.fold)].validation),
    output:
        model=f"{RESULTS}/segmenter/fold{{fold}}/model.pt",
        losses=f"{RESULTS}/segmenter/fold{{fold}}/losses.tsv",
    log:
        f"{LOGS}/train_segmentation/fold{{fold}}.log",
    benchmark:
        f"{BENCH}/train_segmentation/fold{{fold}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["segmentation"]["threads"]
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        settings=segmentation_settings,
    script:
        "../workflow_scripts/train_segmentation.py"


rule segment_real_ct:
    input:
        model=f"{RESULTS}/segmenter/fold{{fold}}/model.pt",
        ct=lambda wc: test_references(wc)["ct"],
        caches=test_caches,
    output:
        directory(f"{RESULTS}/labels/real_ct/fold{{fold}}"),
    log:
        f"{LOGS}/segment/real_ct/fold{{fold}}.log",
    benchmark:
        f"{BENCH}/segment/real_ct/fold{{fold}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        subjects=test_subjects,
    script:
        "../workflow_scripts/segment.py"


rule segment_synthetic_ct:
    input:
        model=f"{RESULTS}/segmenter/fold{{fold}}/model.pt",
        synthetic=run_path("synthetic_ct"),
        caches=test_caches,
    output:
        directory(run_path("labels")),
    log:
        run_path("segment", root=LOGS) + ".log",
    benchmark:
        run_path("segment", root=BENCH) + ".tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        subjects=test_subjects,
    script:
        "../workflow_scripts/segment.py"


rule segmentation_metrics_real_ct:
    input:
        predicted=f"{RESULTS}/labels/real_ct/fold{{fold}}",
        reference=lambda wc: test_references(wc)["labels"],
        label_table=lambda wc: test_references(wc)["label_table"],
    output:
        f"{RESULTS}/metrics/segmentation/real_ct/fold{{fold}}.csv",
    log:
        f"{LOGS}/segmentation_metrics/real_ct/fold{{fold}}.log",
    benchmark:
        f"{BENCH}/segmentation_metrics/real_ct/fold{{fold}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        subjects=test_subjects,
    script:
        "../workflow_scripts/segmentation_metrics.py"


rule segmentation_metrics_synthetic_ct:
    input:
        predicted=run_path("labels"),
        reference=lambda wc: test_references(wc)["labels"],
        label_table=lambda wc: test_references(wc)["label_table"],
    output:
        run_path("metrics/segmentation") + ".csv",
    log:
        run_path("segmentation_metrics", root=LOGS) + ".log",
    benchmark:
        run_path("segmentation_metrics", root=BENCH) + ".tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        subjects=test_subjects,
    script:
        "../workflow_scripts/segmentation_metrics.py"


rule segmentation_table:
    input:
        expand(f"{RESULTS}/metrics/segmentation/real_ct/fold{{fold}}.csv", fold=FOLD_IDS),
        all_run_tables("metrics/segmentation"),
    output:
        report(
            f"{RESULTS}/tables/segmentation_metrics.csv",
            caption="../report/segmentation_metrics.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/segmentation_table.log",
    benchmark:
        f"{BENCH}/segmentation_table.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        kind="segmentation",
    script:
        "../workflow_scripts/concat_table.py"
