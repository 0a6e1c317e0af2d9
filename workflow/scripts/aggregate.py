from pathlib import Path

from rankbits import aggregate as agg
from rankbits import explorer
from rankbits.io import read_json
from rankbits.replication import directions_table, load_directions, load_published, replication_table
from rankbits.verdict import brief_verdict, display_verdict, verdict, write_settings
from rankbits.workflow import logged

HTML = ("csv", "md", "html")
with logged(snakemake):
    out = Path(snakemake.output.summary).parent
    runs = agg.load_runs(snakemake.input.runs)
    summary = agg.summarize(runs)
    footprints = {(f["model"], str(f["bits"])): f
                  for f in (read_json(f"{d}/footprint.json") for d in snakemake.input.bases)}
    runs.to_csv(out / "runs.csv", index=False)
    shown = agg.display_summary(summary)
    agg.write_table(shown, str(out / "summary"), ("md", "tex", "html"), agg.clipped_note(shown))
    summary.to_csv(snakemake.output.summary, index=False)
    budget = agg.budget_table(summary, snakemake.params.methods, snakemake.params.budgets)
    agg.write_table(budget, str(out / "budget_table"), (*HTML, "tex"))
    arms = agg.arms_table(summary, snakemake.params.methods, snakemake.params.bits)
    agg.write_table(arms, str(out / "arms_table"), (*HTML, "tex"))
    agg.write_table(agg.memory_table(summary, footprints), str(out / "memory"), (*HTML, "tex"))
    agg.write_table(agg.cost_table(summary), str(out / "costs"), HTML)
    alpha, margins = snakemake.params.verdict["alpha"], snakemake.params.verdict["margin"]
    v = verdict(runs, alpha, margins)
    write_settings(str(out / "verdict_settings.json"), alpha, margins)
    v.to_csv(snakemake.output.verdict, index=False)
    for shown, stem, formats in ((display_verdict(v), "verdict", ("md", "html")), (brief_verdict(v), "answer", ("md",))):
        agg.write_table(shown, str(out / stem), formats, agg.clipped_note(shown))
    agg.write_table(agg.selection_table(snakemake.input.runs), str(out / "lr_selection"), (*HTML, "tex"))
    comp = agg.comparisons(runs, alpha, margins=margins)
    agg.write_table(comp, str(out / "comparisons"), ("csv",))
    agg.write_table(agg.display_comparisons(comp), str(out / "comparisons"), ("md", "tex", "html"))
    published = load_published(snakemake.input.published)
    agg.write_table(replication_table(summary, published), str(out / "replication"), (*HTML, "tex"))
    directions = load_directions(snakemake.input.directions)
    agg.write_table(directions_table(runs, directions), str(out / "directions"), HTML)
    agg.write_table(agg.scores_table(snakemake.input.scores), str(out / "scores"), HTML)
    explorer.write([(out.parent, None)], snakemake.output.explorer_html, f"rankbits explorer: {out.parent.name}")
    agg.write_table(agg.failed_runs(snakemake.input.runs), str(out / "failed_runs"), HTML)
