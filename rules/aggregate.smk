# Every table is written as CSV (data), Markdown and, where it has a paper layout, LaTeX; the
# report shows each one inline as HTML, grouped by what a reader looks for.
TABLE_NAMES = ["verdict", "summary", "budget_table", "arms_table", "memory", "costs", "scores", "lr_selection",
               "comparisons", "replication", "directions", "failed_runs"]
LATEX = ["summary", "budget_table", "arms_table", "memory", "lr_selection", "comparisons", "replication"]
TABLES = [f"{OUT}/tables/{name}.csv" for name in TABLE_NAMES]


rule aggregate:
    input:
        runs=run_dirs(f"{OUT}/runs"),
        bases=sorted({base_dir(run.model, run.bits) for run in RUNS}),
        published=PUBLISHED,
        directions=DIRECTIONS,
        scores=[score_path(*entry) for entry in SCORES],
    output:
        verdict=f"{OUT}/tables/verdict.csv",
        summary=f"{OUT}/tables/summary.csv",
        verdict_html=report_table("verdict", "Answer", "verdict: the best arm at each training memory"),
        explorer_html=report_table("explorer", "Answer", "explorer: every run and arm on axes you pick"),
        summary_html=report_table("summary", "Tables", "summary: every arm, mean ± std and 95% CI over seeds"),
        budget_html=report_table("budget_table", "Tables", "methods × budgets (S0 Table 1 layout)"),
        arms_html=report_table("arms_table", "Tables", "methods × bit-widths (S0 Table 3/4 layout)"),
        memory_html=report_table("memory", "Tables", "memory and parameters (S0 Table 2 layout)"),
        costs_html=report_table("costs", "Tables", "costs: training memory, CPU time, step time"),
        selection_html=report_table("lr_selection", "Training", "learning-rate selection per run"),
        comparisons_html=report_table("comparisons", "Comparisons", "every axis: difference, CI, p (Holm)"),
        scores_html=report_table("scores", "Tables", "scored without training: bases, adapters on other tasks"),
        replication_html=report_table("replication", "Replication", "published vs measured"),
        directions_html=report_table("directions", "Replication", "the seeds' claimed directions: held?"),
        failed_html=report_table("failed_runs", "Training", "failed runs (recorded under --keep-going)"),
        extra=[f"{OUT}/tables/{name}.csv" for name in TABLE_NAMES if name not in ("verdict", "summary")]
        + [f"{OUT}/tables/{name}.md" for name in TABLE_NAMES]
        + [f"{OUT}/tables/{name}.tex" for name in LATEX]
        + [f"{OUT}/tables/runs.csv", f"{OUT}/tables/verdict_settings.json", f"{OUT}/tables/answer.md"],
    params:
        verdict=config["verdict"],
        methods=study_values(config, "methods"),
        budgets=study_values(config, "budgets"),
        bits=study_values(config, "bits"),
    log:
        f"{LOGS}/aggregate.log",
    conda:
        ENV
    script:
        "../workflow/scripts/aggregate.py"
