# rankbits: how should LoRA rank and weight bits be spent? One study, one DAG:
# data -> tokenize -> base model per bit-width -> train per run -> evaluate -> tables, plots, report.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
