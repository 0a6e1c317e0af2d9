from rankbits.selection import select_round
from rankbits.workflow import logged

with logged(snakemake):
    select_round(snakemake.params.spec, list(snakemake.input.points), int(snakemake.wildcards.round),
                 snakemake.output[0])
