# rules that may download (from the Hugging Face Hub) run where Snakemake runs: compute nodes
# of a cluster are often offline
localrules:
    prepare_data,
    tokenize,


rule prepare_data:
    output:
        train=f"{CACHE}/data/{{task}}/{{dkey}}/train.parquet",
        selection=f"{CACHE}/data/{{task}}/{{dkey}}/selection.parquet",
        dev=f"{CACHE}/data/{{task}}/{{dkey}}/dev.parquet",
        manifest=f"{CACHE}/data/{{task}}/{{dkey}}/manifest.json",
    params:
        data_root=config["data_root"],
        options=lambda w: task_options(config, w.task),
    log:
        "logs/cache/prepare_data/{task}/{dkey}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/prepare_data.py"


rule tokenize:
    input:
        f"{CACHE}/data/{{task}}/{{dkey}}/{{split}}.parquet",
    output:
        f"{CACHE}/tokenized/{{task}}/{{dkey}}/{{model}}/{{split}}.parquet",
    params:
        options=lambda w: task_options(config, w.task),
        model_options=lambda w: config["models"].get(w.model, {}),
    log:
        "logs/cache/tokenize/{task}/{dkey}/{model}/{split}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/tokenize.py"
