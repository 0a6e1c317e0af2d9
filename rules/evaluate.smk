rule evaluate:
    input:
        unpack(rate_choice),
        unpack(forgetting_input),
        points=grid_points,
        dev=lambda w: tokenized(w.task, w.model, "dev"),
        manifest=lambda w: f"{CACHE}/data/{w.task}/{DATA_KEY[w.task]}/manifest.json",  # the data's sources
        base=lambda w: base_dir(w.model, w.bits),
    output:
        directory(f"{OUT}/runs/{RUN_PATTERN}"),
    params:
        spec=spec_for,
        adapter_off=f"{CACHE}/adapter_off",  # losses with the adapter off, once per base (evaluate.AdapterOff)
    threads: 1
    resources:
        mem_mb=4000,
        gpu_mib=gpu_mib_for,
    log:
        f"{LOGS}/evaluate/{RUN_PATTERN}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate.py"


# scoring without training (rankbits.config.scoring_plan): the full-precision base without
# adapter, and finished runs' adapters on another task's dev split
rule score_base:
    input:
        dev=lambda w: tokenized(w.task, w.model, "dev"),
        base=lambda w: base_dir(w.model, "32"),
    output:
        f"{OUT}/scores/{{task}}/{{model}}/base.json",
    params:
        spec=lambda w: scoring_spec(config, w.task, w.model),
    threads: 1
    resources:
        mem_mb=4000,
        gpu_mib=model_gpu_mib,
    log:
        f"{LOGS}/score/{{task}}/{{model}}/base.log",
    conda:
        ENV
    script:
        "../workflow/scripts/score.py"


rule score_adapter:
    input:
        dev=lambda w: tokenized(w.target, w.model, "dev"),
        base=lambda w: base_dir(w.model, w.bits),
        run=f"{OUT}/runs/{RUN_PATTERN}",
    output:
        f"{OUT}/scores/{{target}}/{RUN_PATTERN}.json",
    params:
        spec=lambda w: scoring_spec(config, w.target, w.model),
    threads: 1
    resources:
        mem_mb=4000,
        gpu_mib=model_gpu_mib,
    log:
        f"{LOGS}/score/{{target}}/{RUN_PATTERN}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/score.py"
