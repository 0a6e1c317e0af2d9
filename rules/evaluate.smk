rule evaluate:
    input:
        unpack(rate_choice),
        points=grid_points,
        dev=lambda w: tokenized(w.task, w.model, "dev"),
        base=lambda w: base_dir(w.model, w.bits),
    output:
        directory(f"{OUT}/runs/{RUN_PATTERN}"),
    params:
        spec=spec_for,
    threads: 1
    resources:
        mem_mb=4000,
        gpu=GPUS,
    log:
        f"{LOGS}/evaluate/{RUN_PATTERN}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate.py"
