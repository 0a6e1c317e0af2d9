rule prepare_base:
    input:
        unpack(calibration_input),
    output:
        directory(f"{CACHE}/base/{{model}}/{{bits}}/{{bkey}}"),
    params:
        model_options=lambda w: config["models"].get(w.model, {}),
        device=config["device"],
        calibration_samples=config["quantization"]["calibration_samples"],
    resources:
        gpu=GPUS,
        gpu_mib=GPU_MIB,  # the whole GPU: the full-precision model is loaded to quantize it
    log:
        "logs/cache/prepare_base/{model}/{bits}/{bkey}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/prepare_base.py"
