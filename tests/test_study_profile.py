"""bench/study_profile.py: CPU by rule, Snakemake's own and the training share, from a run's files."""
from __future__ import annotations

import json
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from study_profile import main, profile  # noqa: E402


def test_the_training_share_is_the_loops_cpu_over_all_cpu(tmp_path, capsys):
    logs, results = tmp_path / "logs" / "s", tmp_path / "results" / "s"
    for rule, name, lines in (("train", "a/lr0.001.log", ["process): 1.5", "fork): 20.0"]),
                              ("train", "b/lr0.002.log", ["process): 1.5", "fork): 18.0"]),
                              ("evaluate", "a.log", ["process): 4.0"]),
                              ("aggregate", "x.log", [])):
        f = logs / rule / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("progress\n" + "".join(f"rankbits cpu seconds ({line}\n" for line in lines))
    (logs / "snakemake_cpu.json").write_text(json.dumps({"self": 5.0, "children": 7.0}))
    for run, cpu in (("a/lr0.001", 15.0), ("b/lr0.002", 15.0)):
        d = results / "adapters" / run
        d.mkdir(parents=True)
        (d / "train_info.json").write_text(json.dumps({"timing": {
            "train_cpu_seconds": cpu, "selection_cpu_seconds": 2.0,
            "phase_cpu_seconds": {"data": 0.5, "build": 1.0, "loop": cpu, "record": 2.5, "save": 0.2}}}))
    run = results / "runs" / "a"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"eval_info": {"eval_cpu_seconds": 6.0}}))
    p = profile(results, logs, None)
    assert p["phases"] == {"data": 1.0, "build": 2.0, "loop": 30.0, "record": 1.0, "save": 0.4,
                           "selection scoring": 4.0}
    assert p["test_scoring"] == 6.0
    assert p["rules"]["train"] == {"jobs": 2, "cpu": 41.0, "fork": 38.0, "unmeasured": 0}
    assert p["rules"]["aggregate"]["unmeasured"] == 1
    assert p["total"] == 41.0 + 4.0 + 5.0 and p["training_share"] == 30.0 / 50.0
    main([str(results), "--logs", str(logs), "--cache-logs", ""])
    out = capsys.readouterr().out
    assert "training share: 0.600" in out and "(1 log(s) without a CPU line)" in out
    assert "selection scoring 4.0" in out and "were everything else free, the share would be 0.750" in out
