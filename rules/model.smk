rule prepare_base:
    output:
        "results/base/{model}/{bits}/footprint.json",
    params:
        model_options=lambda w: config["models"].get(w.model, {}),
        device=config["device"],
    log:
        "logs/prepare_base/{model}/{bits}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/prepare_base.py"
