from rankbits.train import NonFiniteLoss, train_run, write_failure
from rankbits.workflow import keep_going, logged

with logged(snakemake):
    try:
        train_run(snakemake.params.spec, snakemake.input.train, snakemake.output[0], snakemake.threads,
                  snakemake.input.base, snakemake.input.get("upstream"),
                  snakemake.input.selection, snakemake.params.checkpoint,
                  snakemake.config["checkpoint_every"])
    except NonFiniteLoss as exc:  # the same seed would diverge again: under --keep-going, a result
        if not keep_going():
            raise
        print(f"rankbits: run failed, recorded (--keep-going): {exc}")
        write_failure(snakemake.output[0], snakemake.params.spec, exc)
