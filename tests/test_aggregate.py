import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import fake_record
from rankbits import aggregate as agg
from rankbits.record import HIGHER, METRIC, PRIMARY_METRIC


def fake_run(root, task, method, budget, seed, acc, bits="32"):
    d = root / task / "minilm" / method / str(budget) / bits / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(fake_record(task, method, budget, bits, seed, acc)))
    return str(d)


@pytest.fixture
def runs(tmp_path):
    dirs = [fake_run(tmp_path, "sst2", m, b, s, acc)
            for m, b, s, acc in [("lora", 2, 0, 0.80), ("lora", 2, 1, 0.90), ("lora", 2, 2, 0.85),
                                 ("adalora", 2, 0, 0.70), ("lora", 8, 0, 0.88), ("adalora", 8, 0, 0.86)]]
    return agg.load_runs(dirs)


def test_summary_mean_std_n_over_seeds(runs):
    s = agg.summarize(runs)
    assert len(s) == 4
    row = s[(s.method == "lora") & (s.budget == 2)].iloc[0]
    assert row["n"] == 3 and row["seeds"] == "0,1,2"
    assert row[f"{METRIC}accuracy_mean"] == pytest.approx(0.85)
    assert row[f"{METRIC}accuracy_std"] == pytest.approx(0.05)  # sample std, ddof=1
    one = s[(s.method == "adalora") & (s.budget == 2)].iloc[0]
    assert one["n"] == 1 and math.isnan(one[f"{METRIC}accuracy_std"])


def test_display_and_budget_table_layout(runs):
    s = agg.summarize(runs)
    shown = agg.display_summary(s)
    assert shown.loc[(shown.method == "lora") & (shown.budget == 2), "accuracy"].iloc[0] == "0.8500 ± 0.0500"
    assert shown.loc[(shown.method == "adalora") & (shown.budget == 2), "accuracy"].iloc[0] == "0.7000"
    t = agg.budget_table(s, ["lora", "adalora"], [2, 8])
    assert list(t.columns) == ["task", "model", "bits", "metric", "LoRA r=2", "AdaLoRA r=2",
                               "LoRA r=8", "AdaLoRA r=8"]
    assert len(t) == 1 and t.iloc[0]["AdaLoRA r=8"] == "0.8600"


def test_memory_table_reads_footprints(runs):
    s = agg.summarize(runs)
    m = agg.memory_table(s, {("minilm", "32"): {"total_bytes": 2**20 * 86.5}})
    assert (m["base MiB"] == 86.5).all()
    assert m.loc[(m.method == "lora") & (m.budget == 8), "trainable params"].iloc[0] == 8000


def test_write_table_formats(tmp_path, runs):
    agg.write_table(agg.display_summary(agg.summarize(runs)), str(tmp_path / "t"))
    assert pd.read_csv(tmp_path / "t.csv").shape[0] == 4
    assert "±" in (tmp_path / "t.md").read_text()
    assert "\\begin{tabular}" in (tmp_path / "t.tex").read_text()


def test_comparisons_pair_by_seed_and_bootstrap_one_seed(tmp_path):
    import numpy as np

    dirs = [fake_run(tmp_path, "sst2", m, 2, s, acc)
            for m, s, acc in [("lora", 0, 0.80), ("lora", 1, 0.82), ("lora", 2, 0.84), ("lora", 3, 0.86),
                              ("adalora", 0, 0.81), ("adalora", 1, 0.84), ("adalora", 2, 0.87), ("adalora", 3, 0.90)]]
    labels = np.array([0, 1] * 50)
    for m, pred in (("lora", labels), ("adalora", np.zeros(100, dtype=int))):  # one seed at budget 8
        d = fake_run(tmp_path, "sst2", m, 8, 0, float((pred == labels).mean()))
        pd.DataFrame({"idx": range(100), "label": labels, "pred": pred}).to_parquet(f"{d}/predictions.parquet")
        dirs.append(d)
    for d in dirs[:8:4]:  # seed 0 at budget 2, for the budget axis' one shared seed
        pd.DataFrame({"idx": range(100), "label": labels, "pred": labels}).to_parquet(f"{d}/predictions.parquet")
    comp = agg.comparisons(agg.load_runs(dirs), n_boot=300)
    method = comp[comp["axis"] == "method"].set_index("budget")
    paired = method.loc[2]
    assert paired["method"] == "adalora" and paired["baseline"] == "lora" and paired["seeds"] == 4
    assert paired["diff"] == pytest.approx(0.025)  # differences 0.01, 0.02, 0.03, 0.04
    assert paired["sign_flip_p"] == pytest.approx(2 / 16)  # 4 seeds cannot reach 0.05 this way
    assert paired["ci_low"] < 0.025 < paired["ci_high"] and paired["p"] < 0.05
    # the only comparison with seeds in its family: Holm leaves it as it is, and it is starred
    assert paired["p_holm"] == pytest.approx(paired["p"]) and paired["significant"]
    boot = method.loc[8]
    assert boot["seeds"] == 1 and boot["diff"] == pytest.approx(-0.5) and boot["p"] == 0.0
    assert not boot["significant"] and boot["test"].startswith("evaluation noise only (1 seed)")
    # the budget axis too: budget 2 vs 8 of each method, on their one shared seed
    budget = comp[comp["axis"] == "budget"]
    assert sorted(budget["method"]) == ["adalora", "lora"] and set(budget["baseline"]) == {8}
    shown = agg.display_comparisons(comp)
    row = shown[(shown["axis"] == "method") & (shown["arm"] == "AdaLoRA r=8")].iloc[0]
    assert row["difference"] == "-0.5000" and row["p"] == "< 1/300" and row["p (Holm)"] == "— (1 seed)"
    assert row["vs"] == "LoRA r=8"
    assert shown[shown["arm"] == "AdaLoRA r=2"]["difference"].iloc[0].endswith(" *")


def test_comparisons_cover_the_bits_axis_and_correct_for_many(tmp_path):
    dirs = []
    for seed in range(3):
        for method, bits, acc in (("lora", "32", 0.85), ("lora", "4", 0.80), ("adalora", "32", 0.851),
                                  ("adalora", "4", 0.849)):
            dirs.append(fake_run(tmp_path, "sst2", method, 8, seed, acc + 0.01 * seed + 0.001 * (seed == 1) * (bits == "4"),
                                 bits=bits))
    comp = agg.comparisons(agg.load_runs(dirs))
    bits = comp[comp["axis"] == "bits"].set_index("method")
    assert set(bits["baseline"]) == {"32"} and bits.loc["lora", "diff"] == pytest.approx(-0.05 + 0.001 / 3)
    assert (comp["p_holm"] >= comp["p"]).all() and comp["p_holm"].notna().all()
    assert len(comp) == 4  # method at 32 and at 4; bits for lora and for adalora


def test_pareto_frontier():
    from rankbits.verdict import pareto_mask

    cost = [1, 2, 3, 4, 2]
    value = [0.5, 0.7, 0.6, 0.9, 0.7]
    assert list(pareto_mask(cost, value)) == [True, True, False, True, True]  # equal points both stay


def test_replication_table_matches_published_arms(tmp_path):
    from conftest import REPO

    from rankbits.replication import load_published, replication_table

    published = load_published(REPO / "config" / "published.yaml")
    assert len(published) >= 30 and {e["task"] for e in published} >= {"sst2", "cola", "mrpc", "rte"}
    dirs = [fake_run(tmp_path, "sst2", "lora", 8, 0, 0.88), fake_run(tmp_path, "sst2", "adalora", 8, 0, 0.87),
            fake_run(tmp_path, "sst2", "lora", 8, 0, 0.86, bits="4")]
    table = replication_table(agg.summarize(agg.load_runs(dirs)), published)
    lora = table[(table["method"] == "lora") & (table["bits"] == "32")]
    # S0 Table 1 (full precision), S2 (fp16 counts as full precision), the AdaLoRA paper
    assert sorted(lora["published"]) == [0.916, 0.9495, 0.9576]
    row = lora[lora["source"] == "S0 (Ahn & Lee), Table 1"].iloc[0]
    assert row["measured"] == 0.88 and row["difference"] == pytest.approx(0.88 - 0.9576, abs=1e-4)
    assert "model: DeBERTaV3-base there, minilm" in row["setup differences"]
    s2 = lora[lora["source"] == "S2 (Mohney), Table 1"].iloc[0]
    assert "bits: 16 there, 32 here" in s2["setup differences"]
    assert set(table[table["bits"] == "4"]["published"]) == {0.916}  # S2 B-Q4 at r=8, 4-bit


def test_published_file_errors_name_the_entry(tmp_path):
    from rankbits.replication import load_published

    p = tmp_path / "pub.yaml"
    p.write_text("- {source: X, table: T, model: m, task: sst2, method: lora, budget: 2, bits: '32', metric: accuracy}\n")
    with pytest.raises(ValueError, match=r"pub.yaml: entry 0 \(X\) lacks \['value'\]"):
        load_published(p)


@pytest.mark.parametrize("task, metric", [("wikitext2", "perplexity"), ("cnn_dailymail", "rougeL")])
def test_one_seed_comparison_of_token_tasks_bootstraps_their_own_metric(tmp_path, task, metric):
    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 100, 200)
    worse, better = tokens * 5.0, tokens * 4.0  # summed NLL: per-token 5 vs 4
    rouge_a, rouge_b = rng.uniform(0.1, 0.2, 200), rng.uniform(0.3, 0.4, 200)
    dirs = []
    for method, nll, rl in (("lora", worse, rouge_a), ("adalora", better, rouge_b)):
        d = Path(fake_run(tmp_path, task, method, 8, 0, 0.0))
        m = json.loads((d / "metrics.json").read_text())
        m["eval_info"].update(primary_metric=metric, higher_is_better=metric != "perplexity")
        (d / "metrics.json").write_text(json.dumps(m))
        pd.DataFrame({"idx": range(200), "row": range(200), "nll": nll, "tokens": tokens,
                      "rougeL": rl}).to_parquet(d / "predictions.parquet")
        dirs.append(str(d))
    comp = agg.comparisons(agg.load_runs(dirs))
    row = comp.iloc[0]
    expected = math.exp(4) - math.exp(5) if metric == "perplexity" else rouge_b.mean() - rouge_a.mean()
    assert row["diff"] == pytest.approx(expected) and row["p"] < 0.01
    assert not row["significant"]  # one seed: evaluation noise only, never starred


def direction_runs(a_values, b_values, metric="perplexity"):
    rows = []
    for seed, (va, vb) in enumerate(zip(a_values, b_values)):
        for method, v in (("lora", va), ("adalora", vb)):
            rows.append({"task": "wikitext2", "model": "m", "method": method, "budget": 8, "bits": "32",
                         "seed": seed, f"{METRIC}{metric}": v, PRIMARY_METRIC: metric, HIGHER: False})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("a, b, expected", [
    ([40, 41, 42], [50, 52, 51], "held"),                       # lower perplexity: a better
    ([50, 52, 51], [40, 41, 42], "reversed"),
    ([40, 52, 45], [44, 41, 50], "not resolved (interval includes 0)"),
])
def test_directions_say_whether_a_claimed_order_held(a, b, expected):
    from rankbits.replication import directions_table

    claim = {"source": "S2", "claim": "fixed beats adaptive", "task": "wikitext2", "metric": "perplexity",
             "relation": "better", "a": {"method": "lora", "bits": "32"}, "b": {"method": "adalora", "bits": "32"}}
    table = directions_table(direction_runs(a, b), [claim])
    assert len(table) == 1 and table["direction"].iloc[0] == expected
    assert table["seeds"].iloc[0] == 3
    # positive when a is better: for perplexity, b minus a
    assert table["a better by"].iloc[0] == pytest.approx(np.mean(b) - np.mean(a), abs=1e-4)


def test_an_equal_claim_holds_only_inside_its_tolerance():
    from rankbits.replication import directions_table

    claim = {"source": "S2", "claim": "4-bit costs nothing", "metric": "perplexity", "relation": "equal",
             "tolerance": 0.05, "a": {"method": "lora", "bits": "32"}, "b": {"method": "adalora", "bits": "32"}}
    assert directions_table(direction_runs([50, 50.5, 50.2], [50.1, 50.3, 50.4]), [claim])["direction"].iloc[0] == "held"
    assert directions_table(direction_runs([60, 61, 60.5], [50, 50.3, 50.4]), [claim])["direction"].iloc[0] == "not held"
    # one seed: no interval, no verdict
    one = directions_table(direction_runs([60], [50]), [claim])
    assert one["direction"].iloc[0] == "not resolved (1 seed)"


def test_a_direction_without_a_task_skips_tasks_where_its_metric_is_not_primary():
    """S4's entry names no task; CNN/DM reports perplexity beside its primary ROUGE-L. That raised
    and killed the aggregate rule; now CNN/DM is skipped and WikiText-2 still judged."""
    from rankbits.replication import directions_table

    claim = {"source": "S4", "claim": "r16 beats linear decay", "metric": "perplexity", "relation": "better",
             "a": {"method": "lora", "bits": "32"}, "b": {"method": "adalora", "bits": "32"}}
    summ = direction_runs([30, 31, 32], [40, 41, 42]).assign(**{"task": "cnn_dailymail", PRIMARY_METRIC: "rougeL",
                                                               HIGHER: True})
    runs = pd.concat([direction_runs([40, 41, 42], [50, 52, 51]), summ], ignore_index=True)
    table = directions_table(runs, [claim])
    assert table["task"].tolist() == ["wikitext2"] and table["direction"].iloc[0] == "held"
    with pytest.raises(ValueError, match="is not cnn_dailymail's primary metric"):
        directions_table(runs, [{**claim, "task": "cnn_dailymail"}])


def test_directions_file_errors_name_the_entry(tmp_path):
    from rankbits.replication import load_directions

    path = tmp_path / "d.yaml"
    path.write_text("- {source: S2, claim: x, metric: perplexity, relation: about, a: {}, b: {}}\n")
    with pytest.raises(ValueError, match="entry 0: relation 'about'"):
        load_directions(path)
    path.write_text("- {source: S2, claim: x, metric: perplexity, relation: equal, a: {}, b: {}}\n")
    with pytest.raises(ValueError, match="entry 0: relation equal needs a numeric tolerance"):
        load_directions(path)
    assert len(load_directions(Path(__file__).parents[1] / "config" / "directions.yaml")) == 3


def test_scores_table_names_base_and_adapter(tmp_path):
    base = {"task": "cnn_dailymail", "model": "m", "adapter": None, "n_eval": 15, "seconds": 4.0,
            "metrics": {"rougeL": 0.11, "perplexity": 24.9}}
    adapted = {**base, "adapter": "x/adapter", "run": "alpaca/m/lora/8/32/seed0", "metrics": {"rougeL": 0.12}}
    paths = []
    for i, s in enumerate((base, adapted)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(s))
    table = agg.scores_table([str(p) for p in paths])
    assert table["scored"].tolist() == ["base, no adapter", "adapter of LoRA r=8 seed0, trained on alpaca"]
    assert table.columns[-1] == "seconds" and table["rougeL"].tolist() == [0.11, 0.12]
