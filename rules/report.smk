FIGURES = [
    "results/plots/rank_vs_step.png",
    "results/plots/loss_curves.png",
    "results/plots/metric_vs_params.png",
]


rule rank_heatmap:
    input:
        f"results/runs/{RUN_PATTERN}",
    output:
        report(
            f"results/plots/rank_heatmaps/{RUN_PATTERN}.png",
            caption="../report/rank_heatmap.rst",
            category="Rank allocation",
            subcategory="{task}",
            labels={
                "model": "{model}",
                "method": "{method}",
                "budget": "{budget}",
                "bits": "{bits}",
                "seed": "{seed}",
            },
        ),
    log:
        f"logs/rank_heatmap/{RUN_PATTERN}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/rank_heatmap.py"


rule study_plots:
    input:
        runs=run_dirs("results/runs"),
        summary="results/tables/summary.csv",
    output:
        rank_vs_step=report(
            "results/plots/rank_vs_step.png",
            caption="../report/rank_vs_step.rst",
            category="Rank allocation",
            subcategory="schedule",
            labels={"figure": "total rank vs step"},
        ),
        loss=report(
            "results/plots/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Training",
            labels={"figure": "loss curves"},
        ),
        metric_vs_params=report(
            "results/plots/metric_vs_params.png",
            caption="../report/metric_vs_params.rst",
            category="Tables",
            labels={"table": "metric vs trainable parameters (figure)"},
        ),
    log:
        "logs/study_plots.log",
    conda:
        ENV
    script:
        "../workflow/scripts/study_plots.py"
