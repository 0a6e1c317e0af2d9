from rankbits.plots import rank_heatmap
from rankbits.workflow import logged

with logged(snakemake):
    rank_heatmap(snakemake.input[0], snakemake.output[0])
