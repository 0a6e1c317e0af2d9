# the learning-rate search: a checkpoint, so the rates a run trains at can depend on what its
# first rates scored on the selection split (rankbits.selection.select_round)
localrules:
    select_lr,


checkpoint select_lr:
    input:
        points=select_points,
    output:
        f"{OUT}/selection/{RUN_PATTERN}/round{{round}}.json",
    params:
        spec=spec_for,
    log:
        f"{LOGS}/select_lr/{RUN_PATTERN}/round{{round}}.log",
    conda:
        ENV
    script:
        "../workflow/scripts/select_lr.py"
