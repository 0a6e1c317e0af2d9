from rankbits.jobserver import run

run("rankbits.evaluate:score_only", snakemake.params.spec, snakemake.input.dev, snakemake.input.base,
    snakemake.output[0], snakemake.threads, snakemake.input.get("run"),
    log=snakemake.log[0], server=snakemake.config["job_server"])
