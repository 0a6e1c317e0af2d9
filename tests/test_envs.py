"""envs/*.yaml (for snakemake --use-conda) must pin exactly what pyproject.toml pins."""
import re
import tomllib

import yaml

from conftest import REPO


def pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_cpu_env_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"])
    assert len(wanted) == len(project["dependencies"]), "every dependency is pinned with =="
    env = yaml.safe_load((REPO / "envs" / "cpu.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip) == wanted
