from rankbits.footprint import prepare_base
from rankbits.io import write_json
from rankbits.workflow import logged

with logged(snakemake):
    w = snakemake.wildcards
    write_json(snakemake.output[0],
               prepare_base(w.model, w.bits, snakemake.params.model_options, snakemake.params.device))
