"""The explorer page (one study, or several with rankbits compare): self-contained, with every
run and arm and what the reader needs on hover, from the study's tables."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd

from rankbits import aggregate as agg
from rankbits.verdict import verdict

from test_verdict import write_runs


def study(root, accs):
    dirs = write_runs(root, {("lora", 2, "4"): (180, accs), ("lora", 2, "32"): (200, [0.70, 0.71, 0.69])},
                      collapsed={("lora", 2, "4", 2)})
    runs = agg.load_runs(dirs)
    (root / "tables").mkdir()
    runs.to_csv(root / "tables" / "runs.csv", index=False)
    verdict(runs).to_csv(root / "tables" / "verdict.csv", index=False)


def data_of(page: str) -> dict:
    return json.loads(re.search(r"const D = (\{.*?\});\n", page, re.S).group(1).replace("<\\/", "</"))


def test_two_studies_in_one_offline_page(tmp_path):
    study(tmp_path / "a", [0.78, 0.79, 0.54])
    study(tmp_path / "b", [0.80, 0.81, 0.82])
    out = tmp_path / "compare.html"
    proc = subprocess.run([sys.executable, "-m", "rankbits.cli", "compare", str(tmp_path / "a"), str(tmp_path / "b"),
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page  # offline
    d = data_of(page)
    assert len(d["runs"]) == 12 and len(d["arms"]) == 4 and {r["study"] for r in d["runs"]} == {"a", "b"}
    qlora = next(a for a in d["arms"] if a["study"] == "a" and a["bits"] == "4")
    assert qlora["ci"][1] == 1.0 and qlora["clipped"]  # shown clipped to accuracy's range
    assert qlora["collapsed"].startswith("1 of 3 seeds collapsed") and qlora["rates"] == [0.004]
    assert len(qlora["paths"]) == 3 and qlora["vs_best"] == "is the best"
    run = next(r for r in d["runs"] if r["study"] == "a" and r["bits"] == "4" and r["seed"] == "2")
    assert run["collapsed"] and run["metric"] == 0.54 and run["memory"] == 180 and run["path"].endswith("seed2")
    assert set(d["filters"]) == {"study", "task", "model", "method", "budget", "bits", "seed"}
    missing = subprocess.run([sys.executable, "-m", "rankbits.cli", "compare", str(tmp_path / "none")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no finished study" in missing.stderr
    old = tmp_path / "old"  # tabled by an older rankbits: its runs.csv columns were hand-named
    study(old, [0.78, 0.79, 0.80])
    runs = pd.read_csv(old / "tables" / "runs.csv")
    runs.rename(columns={"eval_info.primary_value": "primary_value"}).to_csv(old / "tables" / "runs.csv", index=False)
    stale = subprocess.run([sys.executable, "-m", "rankbits.cli", "compare", str(old), "--out", str(tmp_path / "x.html")],
                           capture_output=True, text=True)
    assert stale.returncode == 2 and "older rankbits" in stale.stderr and "Traceback" not in stale.stderr
