"""envs/*.yaml (snakemake --use-conda) against pyproject.toml, the one source of versions: each
file parses, pins every package, and pins exactly what pyproject.toml pins; every rule uses one."""
import re
import tomllib

import pytest
import yaml

from conftest import REPO

ENVS = ("cpu", "cuda", "mps")


def pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"])
    assert len(wanted) == len(project["dependencies"]), "every dependency is pinned with =="
    return wanted, project["requires-python"]


@pytest.mark.parametrize("name", ENVS)
def test_env_pins_every_package_as_pyproject_does(name):
    wanted, _ = pyproject_pins()
    env = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # conda packages pinned (name=version); pip lines are pins, index options or the project itself
    assert all(re.fullmatch(r"[a-z0-9_.\-]+=[0-9][0-9.]*", c) for c in conda), conda
    assert any(c.startswith("python=3.") for c in conda)
    loose = [p for p in pip if "==" not in p and not p.startswith(("--extra-index-url", "-e "))]
    assert not loose, f"envs/{name}.yaml: unpinned {loose}"
    assert pins(pip) == wanted, f"envs/{name}.yaml disagrees with pyproject.toml"
    assert "-e .." in pip  # the rankbits package itself, from this checkout


def test_cuda_env_takes_torch_from_a_cuda_index_and_cpu_from_the_cpu_one():
    text = {n: (REPO / "envs" / f"{n}.yaml").read_text() for n in ENVS}
    assert re.search(r"download\.pytorch\.org/whl/cu\d+", text["cuda"])
    assert "download.pytorch.org/whl/cpu" in text["cpu"] and "download.pytorch.org" not in text["mps"]


def test_every_rule_has_a_conda_env_and_the_config_chooses_which():
    # (snakemake --list-conda-envs needs conda itself, which this machine lacks)
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    assert tuple(schema["properties"]["conda_env"]["enum"]) == ENVS
    assert "ENV = f\"../envs/{config['conda_env']}.yaml\"" in (REPO / "rules" / "common.smk").read_text()
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        n_rules = len(re.findall(r"^(?:rule|checkpoint) \w+:", text, re.M))
        assert text.count("    conda:\n        ENV\n") == n_rules, f"{smk.name}: a rule without conda: ENV"
