from rankbits.jobserver import run

run("rankbits.train:train_job", snakemake.params.spec, snakemake.input.train, snakemake.output[0],
    snakemake.threads, snakemake.input.base, snakemake.input.get("upstream"), snakemake.input.selection,
    snakemake.params.checkpoint, snakemake.config["checkpoint_every"], snakemake.params.watch,
    log=snakemake.log[0], server=snakemake.config["job_server"])
