TABLES = [
    "results/tables/summary.csv",
    "results/tables/budget_table.csv",
    "results/tables/memory.csv",
]


rule aggregate:
    input:
        runs=run_dirs("results/runs"),
        footprints=sorted(
            {f"results/base/{run.model}/{run.bits}/footprint.json" for run in RUNS}
        ),
    output:
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
        memory=report(
            "results/tables/memory.csv",
            caption="../report/memory.rst",
            category="Tables",
            labels={"table": "memory and parameters (S0 Table 2 layout)"},
        ),
        extra=multiext("results/tables/summary", ".md", ".tex")
        + multiext("results/tables/budget_table", ".md", ".tex")
        + multiext("results/tables/memory", ".md", ".tex")
        + ["results/tables/runs.csv"],
    params:
        methods=config["study"]["methods"],
        budgets=config["study"]["budgets"],
    log:
        "logs/aggregate.log",
    conda:
        ENV
    script:
        "../workflow/scripts/aggregate.py"
