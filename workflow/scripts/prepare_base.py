from rankbits.jobserver import run

w, p = snakemake.wildcards, snakemake.params
run("rankbits.prepare:prepare_base", w.model, w.bits, p.model_options, p.device, snakemake.output[0],
    snakemake.input.get("calibration"), p.calibration_samples,
    log=snakemake.log[0], server=snakemake.config["job_server"])
