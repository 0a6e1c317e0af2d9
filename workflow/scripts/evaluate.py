from rankbits.evaluate import evaluate_run
from rankbits.workflow import logged

with logged(snakemake):
    evaluate_run(snakemake.params.spec, snakemake.input.adapter, snakemake.input.dev,
                 snakemake.output[0], snakemake.threads, snakemake.input.base)
