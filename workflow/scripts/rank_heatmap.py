from rankbits.jobserver import run

run("rankbits.plots:rank_heatmap", snakemake.input[0], snakemake.output[0],
    log=snakemake.log[0], server=snakemake.config["job_server"])
