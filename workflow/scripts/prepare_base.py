from rankbits.prepare import prepare_base
from rankbits.workflow import logged

with logged(snakemake):
    w, p = snakemake.wildcards, snakemake.params
    prepare_base(w.model, w.bits, p.model_options, p.device, snakemake.output[0],
                 snakemake.input.calibration, p.calibration_samples)
