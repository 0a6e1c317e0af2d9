TABLES = [
    "results/tables/verdict.csv",
    "results/tables/summary.csv",
    "results/tables/budget_table.csv",
    "results/tables/memory.csv",
    "results/tables/arms_table.csv",
    "results/tables/lr_selection.csv",
    "results/tables/comparisons.csv",
    "results/tables/replication.csv",
    "results/tables/failed_runs.csv",
]


rule aggregate:
    input:
        runs=run_dirs("results/runs"),
        bases=sorted({f"results/base/{run.model}/{run.bits}" for run in RUNS}),
        published=PUBLISHED,
    output:
        verdict="results/tables/verdict.csv",
        verdict_html=report(
            "results/tables/verdict.html",
            caption="../report/verdict.rst",
            category="Answer",
            labels={"table": "verdict: the best arm at each training memory"},
        ),
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "summary (mean ± std over seeds)"},
        ),
        budget=report(
            "results/tables/budget_table.csv",
            caption="../report/budget_table.rst",
            category="Tables",
            labels={"table": "methods × budgets (S0 Table 1 layout)"},
        ),
        arms=report(
            "results/tables/arms_table.csv",
            caption="../report/arms_table.rst",
            category="Tables",
            labels={"table": "methods × bit-widths (S0 Table 3/4 layout)"},
        ),
        memory=report(
            "results/tables/memory.csv",
            caption="../report/memory.rst",
            category="Tables",
            labels={"table": "memory and parameters (S0 Table 2 layout)"},
        ),
        selection=report(
            "results/tables/lr_selection.csv",
            caption="../report/lr_selection.rst",
            category="Tables",
            labels={"table": "learning-rate selection and compute per run"},
        ),
        comparisons=report(
            "results/tables/comparisons.csv",
            caption="../report/comparisons.rst",
            category="Statistics (comparisons)",
            labels={"table": "each method vs LoRA: difference, CI, p"},
        ),
        replication=report(
            "results/tables/replication.csv",
            caption="../report/replication.rst",
            category="Replication",
            labels={"table": "published vs measured"},
        ),
        failed=report(
            "results/tables/failed_runs.csv",
            caption="../report/failed_runs.rst",
            category="Tables",
            labels={"table": "failed runs (recorded under --keep-going)"},
        ),
        extra=["results/tables/verdict.md"]
        + multiext("results/tables/costs", ".csv", ".md")
        + multiext("results/tables/summary", ".md", ".tex")
        + multiext("results/tables/budget_table", ".md", ".tex")
        + multiext("results/tables/memory", ".md", ".tex")
        + multiext("results/tables/arms_table", ".md", ".tex")
        + multiext("results/tables/lr_selection", ".md", ".tex")
        + multiext("results/tables/comparisons", ".md", ".tex")
        + multiext("results/tables/replication", ".md", ".tex")
        + ["results/tables/runs.csv", "results/tables/failed_runs.md"],
    params:
        methods=study_values(config, "methods"),
        budgets=study_values(config, "budgets"),
        bits=study_values(config, "bits"),
    log:
        "logs/aggregate.log",
    conda:
        ENV
    script:
        "../workflow/scripts/aggregate.py"
