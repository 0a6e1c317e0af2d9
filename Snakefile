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
include: "rules/select.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/report.smk"


onstart:
    # jobs learn of --keep-going through the environment (it is not part of any run's settings)
    os.environ[KEEP_GOING] = "1" if workflow.execution_settings.keep_going else "0"
    if workflow.executor_plugin.name == "local":
        local_scheduling(workflow.scheduler)  # no 1-second re-selection among waiting jobs
        if config["job_server"]:
            os.environ[JOBSERVER_OWNER] = str(os.getpid())  # jobs fork from one warm process
        if GPUS and "gpu_mib" not in workflow.global_resources:
            workflow.register_resource("gpu_mib", GPU_MIB)  # jobs share the GPU by predicted memory
    elif "gpu" in workflow.global_resources:
        print(f"rankbits: warning: at most {workflow.global_resources['gpu'].value} GPU job(s) at "
              f"once (profiles/default's local cap); on a cluster run with --workflow-profile "
              f"profiles/slurm, or raise it with --resources gpu=N", file=sys.stderr)


onsuccess:
    if not workflow.dryrun:  # Snakemake's own CPU (DAG evaluations included), for bench/study_profile.py
        record_snakemake_cpu(f"{LOGS}/snakemake_cpu.json")
    # a run that diverged under --keep-going is recorded, not fatal; the study still says it failed
    failed = f"{OUT}/tables/failed_runs.csv"
    table = pd.read_csv(failed) if os.path.exists(failed) else None
    if table is not None and len(table):
        print(f"rankbits: some runs failed; see {failed} (or the report's Tables)", file=sys.stderr)
        print(table.to_string(index=False), file=sys.stderr)
        sys.exit(1)
    if not workflow.dryrun and os.path.exists(f"{OUT}/tables/verdict.md"):
        print(finished_message(STUDY, OUT, workflow.overwrite_configfiles), file=sys.stderr)


rule all:
    input:
        final_outputs(),
    default_target: True
