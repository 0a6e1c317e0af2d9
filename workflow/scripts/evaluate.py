from rankbits.evaluate import evaluate_run
from rankbits.workflow import logged

with logged(snakemake):
    evaluate_run(snakemake.params.spec, list(snakemake.input.points), snakemake.input.dev,
                 snakemake.output[0], snakemake.threads, snakemake.input.base)
