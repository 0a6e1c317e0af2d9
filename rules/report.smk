FIGURES = [
    "results/plots/rank_vs_step.png",
    "results/plots/loss_curves.png",
    "results/plots/metric_vs_params.png",
    "results/plots/rank_maps.png",
    "results/plots/lr_sensitivity.png",
    "results/plots/pareto.png",
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


rule quant_diagnostics:
    input:
        "results/base/{model}/{bits}",
    output:
        report(
            "results/plots/quant_diagnostics/{model}/{bits}.png",
            caption="../report/quant_diagnostics.rst",
            category="Rank allocation",
            subcategory="quantization error",
            labels={"model": "{model}", "bits": "{bits}"},
        ),
    log:
        "logs/quant_diagnostics/{model}/{bits}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/quant_diagnostics.py"


rule study_plots:
    input:
        runs=run_dirs("results/runs"),
        summary="results/tables/summary.csv",
        verdict="results/tables/verdict.csv",
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
        rank_maps=report(
            "results/plots/rank_maps.png",
            caption="../report/rank_maps.rst",
            category="Rank allocation",
            subcategory="all arms",
            labels={"figure": "final rank maps of every arm"},
        ),
        lr_sensitivity=report(
            "results/plots/lr_sensitivity.png",
            caption="../report/lr_sensitivity.rst",
            category="Training",
            labels={"figure": "learning-rate sensitivity (selection split)"},
        ),
        pareto=report(
            "results/plots/pareto.png",
            caption="../report/pareto.rst",
            category="Answer",
            labels={"figure": "Pareto: metric vs memory and parameters"},
        ),
    log:
        "logs/study_plots.log",
    conda:
        ENV
    script:
        "../workflow/scripts/study_plots.py"
