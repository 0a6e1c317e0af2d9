from rankbits.train import train_run
from rankbits.workflow import logged

with logged(snakemake):
    train_run(snakemake.params.spec, snakemake.input.train, snakemake.output[0], snakemake.threads,
              snakemake.input.base, snakemake.input.get("upstream"),
              snakemake.input.selection, snakemake.params.checkpoint,
              snakemake.config["checkpoint_every"])
