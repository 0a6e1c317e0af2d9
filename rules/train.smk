rule train:
    input:
        unpack(upstream_input),
        train="results/tokenized/{task}/{model}/train.parquet",
        selection="results/tokenized/{task}/{model}/selection.parquet",
        base="results/base/{model}/{bits}",
    output:
        directory(f"results/adapters/{RUN_PATTERN}/lr{{lr}}"),
    params:
        spec=point_spec_for,
        # outside the output, so it survives the clean-up of a killed job; removed when done
        checkpoint=f"results/checkpoints/{RUN_PATTERN}/lr{{lr}}",
    threads: 1
    resources:
        mem_mb=4000,
        gpu=GPUS,
    log:
        f"logs/train/{RUN_PATTERN}/lr{{lr}}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/train.py"
