# Training (one job per size x model x fold) and synthesis of the fold's test subjects.


rule train:
    input:
        unpack(train_inputs),
    output:
        generator=f"{run_path('models')}/generator.pt",
        losses=f"{run_path('models')}/losses.tsv",
        curves=f"{run_path('models')}/loss_curves.png",
    log:
        run_path("train", root=LOGS) + ".log",
    benchmark:
        run_path("train", root=BENCH) + ".tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        settings=train_settings,
        bone_labels=BONE_LABELS,
    script:
        "../workflow_scripts/train.py"


rule synthesize:
    input:
        generator=f"{run_path('models')}/generator.pt",
        caches=test_caches,
    output:
        directory(run_path("synthetic_ct")),
    log:
        run_path("synthesize", root=LOGS) + ".log",
    benchmark:
        run_path("synthesize", root=BENCH) + ".tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    script:
        "../workflow_scripts/synthesize.py"
