from pathlib import Path

from rankbits.data import prepare_task
from rankbits.workflow import logged

with logged(snakemake):
    prepare_task(snakemake.wildcards.task, snakemake.params.data_root, snakemake.params.options,
                 str(Path(snakemake.output.manifest).parent))
