from rankbits.jobserver import run

run("rankbits.selection:select_round", snakemake.params.spec, list(snakemake.input.points),
    int(snakemake.wildcards.round), snakemake.output[0],
    log=snakemake.log[0], server=snakemake.config["job_server"])
