import pandas as pd

from rankbits import aggregate as agg
from rankbits import plots
from rankbits.workflow import logged

with logged(snakemake):
    runs, out = agg.succeeded(snakemake.input.runs), snakemake.output
    plots.rank_vs_step(runs, out.rank_vs_step)
    plots.loss_curves(runs, out.loss)
    summary = pd.read_csv(snakemake.input.summary)
    plots.metric_vs_params(summary, out.metric_vs_params)
    plots.pareto(pd.read_csv(snakemake.input.verdict), out.pareto)
    plots.rank_maps(runs, out.rank_maps)
    plots.lr_sensitivity(agg.selection_curves(runs), out.lr_sensitivity)
