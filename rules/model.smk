rule prepare_base:
    input:
        calibration=calibration_input,
    output:
        directory("results/base/{model}/{bits}"),
    params:
        model_options=lambda w: config["models"].get(w.model, {}),
        device=config["device"],
        calibration_samples=config["quantization"]["calibration_samples"],
    resources:
        gpu=GPUS,
    log:
        "logs/prepare_base/{model}/{bits}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/prepare_base.py"
