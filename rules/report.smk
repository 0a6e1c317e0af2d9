FIGURES = [
    f"{OUT}/plots/rank_vs_step.png",
    f"{OUT}/plots/loss_curves.png",
    f"{OUT}/plots/metric_vs_params.png",
    f"{OUT}/plots/rank_maps.png",
    f"{OUT}/plots/lr_sensitivity.png",
    f"{OUT}/plots/pareto.png",
]


rule rank_heatmap:
    input:
        f"{OUT}/runs/{RUN_PATTERN}",
    output:
        report(
            f"{OUT}/plots/rank_heatmaps/{RUN_PATTERN}.png",
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
        f"{LOGS}/rank_heatmap/{RUN_PATTERN}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/rank_heatmap.py"


rule quant_diagnostics:
    input:
        lambda w: base_dir(w.model, w.bits),
    output:
        report(
            f"{OUT}/plots/quant_diagnostics/{{model}}/{{bits}}.png",
            caption="../report/quant_diagnostics.rst",
            category="Quantization",
            subcategory="error per layer",
            labels={"model": "{model}", "bits": "{bits}"},
        ),
    log:
        f"{LOGS}/quant_diagnostics/{{model}}/{{bits}}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/quant_diagnostics.py"


rule study_plots:
    input:
        runs=run_dirs(f"{OUT}/runs"),
        summary=f"{OUT}/tables/summary.csv",
        verdict=f"{OUT}/tables/verdict.csv",
    output:
        rank_vs_step=report(
            f"{OUT}/plots/rank_vs_step.png",
            caption="../report/rank_vs_step.rst",
            category="Rank allocation",
            subcategory="schedule",
            labels={"figure": "total rank vs step"},
        ),
        loss=report(
            f"{OUT}/plots/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Training",
            labels={"figure": "loss curves"},
        ),
        metric_vs_params=report(
            f"{OUT}/plots/metric_vs_params.png",
            caption="../report/metric_vs_params.rst",
            category="Answer",
            labels={"figure": "metric vs trainable parameters"},
        ),
        rank_maps=report(
            f"{OUT}/plots/rank_maps.png",
            caption="../report/rank_maps.rst",
            category="Rank allocation",
            subcategory="all arms",
            labels={"figure": "final rank maps of every arm"},
        ),
        lr_sensitivity=report(
            f"{OUT}/plots/lr_sensitivity.png",
            caption="../report/lr_sensitivity.rst",
            category="Training",
            labels={"figure": "learning-rate sensitivity (selection split)"},
        ),
        pareto=report(
            f"{OUT}/plots/pareto.png",
            caption="../report/pareto.rst",
            category="Answer",
            labels={"figure": "Pareto: metric vs memory and parameters"},
        ),
    log:
        f"{LOGS}/study_plots.log",
    conda:
        ENV
    script:
        "../workflow/scripts/study_plots.py"
