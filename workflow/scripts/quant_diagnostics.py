from rankbits.plots import quant_heatmap
from rankbits.workflow import logged

with logged(snakemake):
    quant_heatmap(snakemake.input[0], snakemake.wildcards.model, snakemake.output[0])
