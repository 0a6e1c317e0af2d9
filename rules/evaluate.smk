rule evaluate:
    input:
        unpack(rate_choice),
        points=grid_points,
        dev="results/tokenized/{task}/{model}/dev.parquet",
        base="results/base/{model}/{bits}",
    output:
        directory(f"results/runs/{RUN_PATTERN}"),
    params:
        spec=spec_for,
    threads: 1
    resources:
        mem_mb=4000,
        gpu=GPUS,
    log:
        f"logs/evaluate/{RUN_PATTERN}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate.py"
