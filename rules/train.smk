rule train:
    input:
        unpack(upstream_input),
        train=lambda w: tokenized(w.task, w.model, "train"),
        selection=lambda w: tokenized(w.task, w.model, "selection"),
        base=lambda w: base_dir(w.model, w.bits),
    output:
        directory(f"{OUT}/adapters/{RUN_PATTERN}/lr{{lr}}"),
    params:
        spec=point_spec_for,
        # outside the output, so it survives the clean-up of a killed job; removed when done
        checkpoint=f"{OUT}/checkpoints/{RUN_PATTERN}/lr{{lr}}",
        # logging: tensorboard (rankbits.watch); None when off
        watch=f"{LOGS}/tensorboard/{RUN_PATTERN}/lr{{lr}}" if config["logging"] == "tensorboard" else None,
    threads: 1
    resources:
        mem_mb=4000,
        gpu_mib=gpu_mib_for,
    log:
        f"{LOGS}/train/{RUN_PATTERN}/lr{{lr}}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/train.py"
