from rankbits.jobserver import run

run("rankbits.evaluate:evaluate_run", snakemake.params.spec, list(snakemake.input.points), snakemake.input.dev,
    snakemake.output[0], snakemake.threads, snakemake.input.base, snakemake.input.get("choice"),
    snakemake.input.get("forget_dev"), snakemake.input.get("forget_base"), snakemake.input.manifest,
    snakemake.params.adapter_off,
    log=snakemake.log[0], server=snakemake.config["job_server"])
