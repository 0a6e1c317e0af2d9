# rules that may download (from the Hugging Face Hub) run where Snakemake runs: compute nodes
# of a cluster are often offline
localrules:
    prepare_data,
    tokenize,


rule prepare_data:
    output:
        train="data/{task}/train.parquet",
        selection="data/{task}/selection.parquet",
        dev="data/{task}/dev.parquet",
        manifest="data/{task}/manifest.json",
    params:
        data_root=config["data_root"],
        options=lambda w: task_options(config, w.task),
    log:
        "logs/prepare_data/{task}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/prepare_data.py"


rule tokenize:
    input:
        "data/{task}/{split}.parquet",
    output:
        "results/tokenized/{task}/{model}/{split}.parquet",
    params:
        options=lambda w: task_options(config, w.task),
        model_options=lambda w: config["models"].get(w.model, {}),
    log:
        "logs/tokenize/{task}/{model}/{split}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/tokenize.py"
