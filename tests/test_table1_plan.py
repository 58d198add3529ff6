"""Table 1's plan (issue 19): the split it reports, the extra distribution-matching models, the decoders chosen on
validation, the longer schedule, the paper's heatmap size, finding vs placing (oracle floors, figure, verdicts,
headline table) and how the rerun check compares the new tables. Small synthetic inputs; nothing is trained."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from hdm import paper, plots
from hdm.analysis import claims, headlines, in_short, verdicts
from hdm.analysis.check import SPECS, compare_table, compare_tables
from hdm.analysis.stats import (evaluation_rows, paired_difference, resolution_table, stack_metrics, summarise_over_seeds,
                                training_stability, window_gains)
from hdm.analysis.tables import Tables
from hdm.config import variant_preset
from hdm.decode import DECODERS
from hdm.experiments import (LONGER, PAPER_RESOLUTION, REPAIRS, STRICT_SCREEN, choose_decoders, decoder_candidates,
                             longer_models, model_label, report_split, resolution_screen, table1_extra_models,
                             table1_pairs)  # fmt: skip
from hdm.oracle import oracle_errors, target_kind

MINUS = "\u2212"  # the notebooks' comparison separator: "a − b"
SCALE = "long"
REPAIR = "hdm+head_bias:0.1"
NAMES = ["AP", "AP50", "AP75", "APM", "APL", "AR", "PCK", "err_hm"]


# ---------------------------------------------------------------------------------------------------------
# hdm.experiments: the plan


def test_report_split_auto_explicit_and_bad():
    assert report_split(None) == "test" and report_split(None, "auto") == "test"  # synthetic: held-out test
    assert report_split("coco") == "val" and report_split("mpii", "auto") == "val"  # no labelled test split
    assert report_split(None, "val") == "val" and report_split("coco", "test") == "test"  # as given
    for bad in ("train", "Test", "", None):
        with pytest.raises(ValueError, match="report_split"):
            report_split(None, bad)


def _sweep_csv(path, rows: dict[str, float]):
    """A dynamics sweep summary as the notebook writes it: variant, supplier, PCK_mean (first _mean column)."""
    pd.DataFrame([{"variant": v, "supplier": "relu" if v.startswith("hdm") else "-", "PCK_mean": acc,
                   "PCK_std": 0.01, "err_hm_mean": 1 - acc, "n": 1} for v, acc in rows.items()]).to_csv(path, index=False)
    return path


def test_table1_extra_models(tmp_path):
    with_repairs = _sweep_csv(tmp_path / "sweep.csv", {
        "hdm": 0.9, STRICT_SCREEN + "+epochs:5": 0.95, "gaussian": 0.99,  # never a repair
        "hdm+head_bias:0.1+epochs:5": 0.3, "hdm+level_weight:1+epochs:5": 0.5, "hdm+mass_weighting:true+epochs:5": 0.4})
    assert table1_extra_models("default", "auto", with_repairs) == []  # its budget
    for scale in ("smoke", "long"):
        assert table1_extra_models(scale, "auto", with_repairs) == ["hdm+supplier:softplus", "hdm+level_weight:1"]
        assert table1_extra_models(scale, "auto", None) == ["hdm+supplier:softplus"]
        assert table1_extra_models(scale, "auto", tmp_path / "missing.csv") == ["hdm+supplier:softplus"]
    no_repairs = _sweep_csv(tmp_path / "plain.csv", {"hdm": 0.9, "hdm+lr:1e-4": 0.95, STRICT_SCREEN: 0.99})
    assert table1_extra_models("smoke", "auto", no_repairs) == ["hdm+supplier:softplus"]
    # given: passes through (a list, whatever the scale)
    assert table1_extra_models("default", ["hdm+supplier:softmax"], with_repairs) == ["hdm+supplier:softmax"]
    assert table1_extra_models("long", ("hdm+lr:1e-4",)) == ["hdm+lr:1e-4"]
    assert table1_extra_models("long", []) == []
    for bad in ("hdm+supplier:softplus", None, 3, ["hdm", 1]):
        with pytest.raises(ValueError, match="extra_models"):
            table1_extra_models("long", bad)


def test_decoder_candidates():
    for spec in ("gaussian", "dot", "hdm", "hdm+supplier:softplus"):
        assert decoder_candidates(spec, "default") == ["argmax_shift", "local_com"]
    base = ["argmax_shift", "local_com3", "local_com", "local_com7"]
    for scale in ("smoke", "long"):
        assert decoder_candidates("hdm+supplier:softplus", scale) == base + ["softplus_com"]
        assert decoder_candidates("hdm+supplier:softmax+lr:1e-4", scale) == base + ["softmax_com"]
        for spec in ("hdm", "hdm+supplier:relu", REPAIR, "gaussian", "dot", "gaussian+supplier:softplus"):
            names = decoder_candidates(spec, scale)
            assert names == base and not any(n.endswith("_com") and "local" not in n for n in names)
    for scale in ("default", "smoke", "long"):
        for spec in ("gaussian", "hdm", "hdm+supplier:softplus", "hdm+supplier:softmax"):
            assert set(decoder_candidates(spec, scale)) <= set(DECODERS)
    assert decoder_candidates("hdm", "long", ("local_com",)) == ["local_com"]  # given: as is


def test_choose_decoders_mean_over_seeds_then_own_then_first():
    rows = pd.DataFrame([
        # a: y has the best single seed, x the best mean
        ("a", 0, "x", 0.4), ("a", 1, "x", 0.6), ("a", 0, "y", 0.7), ("a", 1, "y", 0.2),
        # b: p and q tie on the mean
        ("b", 0, "p", 0.5), ("b", 1, "p", 0.5), ("b", 0, "q", 0.25), ("b", 1, "q", 0.75),
        # c: r and s tie, the own decoder t is worse
        ("c", 0, "t", 0.1), ("c", 0, "r", 0.3), ("c", 0, "s", 0.3),
    ], columns=["model", "seed", "decoder", "AP"])  # fmt: skip
    assert choose_decoders(rows) == {"a": "x", "b": "p", "c": "r"}  # ties: the first listed
    assert choose_decoders(rows, "AP", {"a": "y", "b": "q", "c": "t"}) == {"a": "x", "b": "q", "c": "r"}
    assert choose_decoders(rows.assign(PCK=-rows["AP"]), "PCK") == {"a": "y", "b": "p", "c": "t"}  # the metric asked


def test_longer_models():
    candidates = {"hdm+supplier:softplus": 0.30, REPAIR: 0.35, "hdm+level_weight:1": 0.10}
    for scale in ("default", "smoke"):
        assert longer_models(scale, "auto", candidates) == []
    assert longer_models("long", "auto", candidates) == [f"hdm{LONGER}", f"{REPAIR}{LONGER}"]
    assert longer_models("long", "auto", candidates, ours="hdm+lr:1e-4") == [f"hdm+lr:1e-4{LONGER}", f"{REPAIR}{LONGER}"]
    assert longer_models("long", "auto", {}) == longer_models("long", "auto", None) == [f"hdm{LONGER}"]
    assert longer_models("long", ["gaussian+epochs:30"], candidates) == ["gaussian+epochs:30"]
    assert longer_models("long", None, candidates) == [] and longer_models("smoke", ["hdm"]) == ["hdm"]
    cfg = variant_preset("long", f"{REPAIR}{LONGER}")
    assert cfg.epochs == 40 and cfg.head_bias == pytest.approx(0.1)


def test_resolution_screen_and_the_papers_operating_point():
    assert resolution_screen("default") is None
    assert resolution_screen("smoke") == resolution_screen("long") == PAPER_RESOLUTION
    assert resolution_screen("long", None) is None and resolution_screen("default", "+heatmap_hw:32,24") == "+heatmap_hw:32,24"
    cfg = variant_preset("long", "gaussian" + PAPER_RESOLUTION + "+epochs:5")
    assert tuple(cfg.input_hw) == (256, 192) and tuple(cfg.heatmap_hw) == (64, 48)
    assert tuple(cfg.pretrain_hw) == (128, 96) and cfg.epochs == 5
    base = variant_preset("long", "gaussian+epochs:5")
    assert tuple(base.input_hw) != (256, 192) and tuple(cfg.pretrain_hw) == tuple(base.input_hw)  # same start


def test_table1_pairs_each_later_method_against_every_earlier_one():
    methods = ["gaussian", "dot", "hdm", "hdm+supplier:softplus", REPAIR]
    pairs = table1_pairs(methods)
    assert len(pairs) == len(set(pairs)) == len(methods) * (len(methods) - 1) // 2
    assert pairs[:3] == [("dot", "gaussian"), ("hdm", "gaussian"), ("hdm", "dot")]
    assert pairs[-1] == (REPAIR, "hdm+supplier:softplus")
    assert all(methods.index(a) > methods.index(b) for a, b in pairs)  # later − earlier, never a self pair
    assert [a for a, _ in pairs] == sorted((a for a, _ in pairs), key=methods.index)  # in order
    assert table1_pairs(["gaussian"]) == [] and table1_pairs([]) == []


def test_model_label():
    for repair, what in REPAIRS.items():
        assert model_label(repair) == f"ours, repaired: {what}"
        assert model_label(repair + "+epochs:5").startswith("ours, repaired:")
    for spec in ("gaussian", "hdm", "hdm+supplier:softplus", "hdm+head_bias:0.05", STRICT_SCREEN, "gaussian+epochs:40"):
        assert model_label(spec) == paper.label(spec)
    assert not model_label("hdm+head_bias:0.05").startswith("ours, repaired")


# ---------------------------------------------------------------------------------------------------------
# hdm.analysis.stats: evaluation rows and the heatmap-size screen


def test_evaluation_rows_one_row_per_model_seed_decoder():
    calls = []

    def evaluate(run, decoder=None, split="val"):
        calls.append((run, decoder, split))
        return {"AP": run * 10 + len(decoder), "PCK": -len(decoder), "unused": 99.0}

    runs = {("gaussian", 0): 1, ("gaussian", 1): 2, ("hdm", 0): 3}
    decoders = {"gaussian": ["argmax_shift"], "hdm": ["argmax_shift", "local_com"]}
    rows = evaluation_rows(runs, decoders, evaluate, ["AP", "PCK"], split="test")
    assert list(rows.columns) == ["model", "seed", "decoder", "split", "AP", "PCK"]
    assert list(zip(rows["model"], rows["seed"], rows["decoder"])) == [
        ("gaussian", 0, "argmax_shift"), ("gaussian", 1, "argmax_shift"), ("hdm", 0, "argmax_shift"),
        ("hdm", 0, "local_com")]  # fmt: skip
    assert (rows["split"] == "test").all()
    assert rows["AP"].tolist() == [22, 32, 42, 39] and rows["PCK"].tolist() == [-12, -12, -12, -9]
    assert {c[2] for c in calls} == {"test"}  # every evaluation on the split asked
    assert set(calls) == {(1, "argmax_shift", "test"), (2, "argmax_shift", "test"), (3, "argmax_shift", "test"),
                          (3, "local_com", "test")}  # fmt: skip
    assert evaluation_rows(runs, decoders, evaluate, ["AP"])["split"].eq("val").all()  # default: validation


class _Config:
    def __init__(self, input_hw, heatmap_hw):
        self.input_hw, self.heatmap_hw = input_hw, heatmap_hw


class _Run:
    def __init__(self, input_hw, heatmap_hw, metrics):
        self.config, self.metrics = _Config(input_hw, heatmap_hw), metrics


def test_resolution_table_reads_the_last_epoch():
    shuffled = pd.DataFrame({"epoch": [3, 1, 5, 2, 4], "AP": [0.3, 0.1, 0.5, 0.2, 0.4], "PCK": [3, 1, 5, 2, 4],
                             "lr": 1e-3})  # fmt: skip
    runs = {("gaussian", "base"): _Run((128, 96), (32, 24), shuffled),
            ("gaussian", "paper"): _Run((256, 192), (64, 48), shuffled.assign(AP=shuffled["AP"] + 1)),
            ("hdm", "paper"): _Run((256, 192), (64, 48), shuffled.iloc[:2])}
    table = resolution_table(runs, {"gaussian": "Gaussian"}, ["AP", "PCK"])
    assert table["model"].tolist() == ["Gaussian", "Gaussian", "hdm"]
    assert table["size"].tolist() == ["base", "paper", "paper"]
    assert table["input"].tolist() == ["128x96", "256x192", "256x192"]
    assert table["heatmap"].tolist() == ["32x24", "64x48", "64x48"]
    assert table["epochs"].tolist() == [5, 5, 3]
    assert table["AP"].tolist() == pytest.approx([0.5, 1.5, 0.3]) and table["PCK"].tolist() == [5, 5, 3]
    assert "lr" not in table


# ---------------------------------------------------------------------------------------------------------
# hdm.oracle: the target of each method and its floor


def test_target_kind():
    assert target_kind("gaussian") == "gaussian" and target_kind("gaussian+epochs:40+lr_steps:36,39") == "gaussian"
    assert target_kind("dot") == target_kind("dot+lr:1e-4") == "dot"
    for spec in ("hdm", "hdm+supplier:softplus", REPAIR, "hdm_sinkhorn", "hdm_naive", "hdm" + PAPER_RESOLUTION):
        assert target_kind(spec) == "subpixel_dot"


@pytest.fixture(scope="module")
def synthetic_val(tmp_path_factory):
    from hdm.data.coco import CocoTopDown
    from hdm.data.synthetic import generate

    files = generate(tmp_path_factory.mktemp("synthetic"), "val", num_images=12, seed=0)
    return CocoTopDown(*files, (128, 96), (32, 24))


def test_oracle_errors_floors(synthetic_val):
    splat = oracle_errors(synthetic_val, "subpixel_dot", "local_com")
    assert set(splat) == {"mean", "median", "p90"}
    assert splat["mean"] < 1e-6 and splat["p90"] < 1e-6  # the centre of mass of a bilinear splat is exact
    shifted = oracle_errors(synthetic_val, "gaussian", "argmax_shift")
    assert 0 < shifted["mean"] <= 0.5  # pixel-centred Gaussian + quarter shift: at most ~0.35 px per axis
    assert 0 < shifted["median"] <= shifted["p90"] <= 0.5 * np.sqrt(2)
    assert oracle_errors(synthetic_val, target_kind("hdm+supplier:softplus"), "local_com")["mean"] < 1e-6


# ---------------------------------------------------------------------------------------------------------
# Finding vs placing: the tables as notebooks/table1.py writes them, the figure, the verdicts, the headline table


METHODS = ["gaussian", "dot", "hdm", "hdm+supplier:softplus", REPAIR]
SEEDS = (0, 1, 2)
LABELS = {"gaussian": paper.METHOD_LABELS["gaussian"], "dot": paper.METHOD_LABELS["dot"],
          **{m: model_label(m) for m in METHODS[2:]}}  # fmt: skip


def _finding(errors: dict[str, list[float]], joints: int = 40, common: int = 12) -> pd.DataFrame:
    """``table1_finding_placing_<scale>``: one row per (method, seed), common_mean_err_hm as given per seed."""
    rows = []
    for m, per_seed in errors.items():
        for seed, err in zip(SEEDS, per_seed):
            rows.append({"method": m, "decoder": "local_com" if m.startswith("hdm") else "argmax_shift", "seed": seed,
                         "joints": joints, "found_share": 0.5 + 0.01 * seed + 0.1 * METHODS.index(m),
                         "found_mean_err_hm": err + 0.1, "common_joints": common, "common_mean_err_hm": err,
                         "common_median_err_hm": err - 0.05, "common_p90_err_hm": err + 0.3,
                         "oracle_mean_err_hm": 0.0 if m.startswith("hdm") else 0.39,
                         "oracle_median_err_hm": 0.0 if m.startswith("hdm") else 0.40})  # fmt: skip
    return pd.DataFrame(rows)


def _paired(final: pd.DataFrame, measures: list[str]) -> pd.DataFrame:
    """The notebook's ``table1_paired_all`` / ``table1_finding_placing_paired``: every pair of ``table1_pairs``."""
    methods = list(dict.fromkeys(final["method"]))
    paired = pd.concat([paired_difference(final, measures, a, b).assign(comparison=f"{a} {MINUS} {b}")
                        for a, b in table1_pairs(methods)], ignore_index=True)  # fmt: skip
    return paired[["comparison", *paired.columns[:-1]]]


def _final(ap: dict[str, list[float]]) -> pd.DataFrame:
    """``table1_runs_<scale>``: one row per (method, seed) on the reported split."""
    rows = []
    for m, per_seed in ap.items():
        for seed, value in zip(SEEDS, per_seed):
            rows.append({"method": m, "seed": seed, "decoder": "local_com", "split": "test",
                         **{n: value + 0.01 * i for i, n in enumerate(NAMES[:-1])}, "err_hm": 2 - value})
    return pd.DataFrame(rows)


def _write(folder, finding: pd.DataFrame | None = None, ap: dict[str, list[float]] | None = None,
           scale: str = SCALE) -> Tables:  # fmt: skip
    """Write the tables of the finding/placing and repair claims as the notebook does; returns ``Tables``."""
    folder.mkdir(parents=True, exist_ok=True)
    if finding is not None:
        plots.save_table(finding, f"table1_finding_placing_{scale}", folder)
        measures = ["found_share", "found_mean_err_hm", "common_mean_err_hm", "common_median_err_hm",
                    "common_p90_err_hm"]  # fmt: skip
        plots.save_table(_paired(finding, measures), f"table1_finding_placing_paired_{scale}", folder)
    if ap is not None:
        final = _final(ap)
        summary = summarise_over_seeds(final, ["method"], NAMES)
        summary.insert(1, "label", [LABELS[m] for m in summary["method"]])
        summary.insert(2, "split", "test")
        summary.insert(3, "decoder", "local_com")
        plots.save_table(summary, f"table1_summary_{scale}", folder)
        plots.save_table(_paired(final, NAMES), f"table1_paired_all_{scale}", folder)
    return Tables(folder)


GAUSS = [1.00, 1.10, 0.95]
AP = {"gaussian": [0.60, 0.62, 0.61], "dot": [0.50, 0.52, 0.49], "hdm": [0.30, 0.33, 0.31],
      "hdm+supplier:softplus": [0.40, 0.41, 0.43]}  # fmt: skip


def test_finding_placing_table_format_is_the_notebooks(tmp_path):
    t = _write(tmp_path, _finding({"gaussian": GAUSS, "hdm": [0.5, 0.55, 0.52]}), AP)
    paired = t.get(f"table1_finding_placing_paired_{SCALE}")
    assert list(paired.columns) == ["comparison", "metric", "n", "mean", "std", "low", "high", "per_seed"]
    assert (paired["comparison"] == f"hdm {MINUS} gaussian").all()
    summary = t.get(f"table1_summary_{SCALE}")
    assert list(summary.columns[:4]) == ["method", "label", "split", "decoder"] and "err_hm_std" in summary


def test_finding_placing_verdicts(tmp_path):
    better = [0.50, 0.62, 0.41]  # below Gaussian on every seed
    worse = [1.40, 1.60, 1.30]
    spans = [0.90, 1.15, 0.90]  # differences −0.1, +0.05, −0.05: a mean below 0, an interval across it
    row = claims.finding_placing(_write(tmp_path / "yes", _finding({"gaussian": GAUSS, "hdm": better}), AP), SCALE)
    assert row["verdict"] == "yes" and "placed more precisely by" in row["detail"]
    assert "12 joints every model found" in row["numbers"] and " on the test split" in row["numbers"]
    # one model better is enough, even beside a worse one
    mixed = _finding({"gaussian": GAUSS, "hdm": worse, "hdm+supplier:softplus": better})
    assert claims.finding_placing(_write(tmp_path / "mixed", mixed, AP), SCALE)["verdict"] == "yes"
    all_worse = _finding({"gaussian": GAUSS, "dot": better, "hdm": worse, "hdm+supplier:softplus": worse})
    row = claims.finding_placing(_write(tmp_path / "no", all_worse, AP), SCALE)
    assert row["verdict"] == "no" and row["detail"] == "placed less precisely"  # dot is not distribution matching
    spanning = _finding({"gaussian": GAUSS, "hdm": worse, "hdm+supplier:softplus": spans})
    row = claims.finding_placing(_write(tmp_path / "spans", spanning, AP), SCALE)
    assert row["verdict"] == "cannot be judged" and row["detail"] == "no difference beyond the seed spread"
    assert row["verdict"] in claims.VERDICTS
    # no common joint, or a table missing: no verdict
    assert claims.finding_placing(_write(tmp_path / "none", _finding({"gaussian": GAUSS, "hdm": better},
                                                                       common=0)), SCALE) is None  # fmt: skip
    assert claims.finding_placing(_write(tmp_path / "empty"), SCALE) is None
    (tmp_path / "yes" / f"table1_finding_placing_paired_{SCALE}.csv").unlink()
    assert claims.finding_placing(Tables(tmp_path / "yes"), SCALE) is None
    assert claims.finding_placing(Tables(tmp_path / "mixed"), "default") is None  # another scale's tables


def test_repair_trains_verdict(tmp_path):
    up = {**AP, REPAIR: [0.40, 0.42, 0.41]}  # repair − hdm ≈ +0.10 on every seed
    row = claims.repair_trains(_write(tmp_path / "yes", ap=up), SCALE)
    assert row["verdict"] == "yes" and row["numbers"].startswith(LABELS[REPAIR])
    assert "3 seeds on the test split" in row["numbers"]
    assert "− ours" in row["numbers"] and "− Gaussian" in row["numbers"]
    close = {**AP, REPAIR: [0.33, 0.31, 0.33]}  # +0.03, −0.02, +0.02: a mean above 0, the interval's low below
    assert claims.repair_trains(_write(tmp_path / "no", ap=close), SCALE)["verdict"] == "no"
    down = {**AP, REPAIR: [0.10, 0.12, 0.11]}
    assert claims.repair_trains(_write(tmp_path / "down", ap=down), SCALE)["verdict"] == "no"
    # no repair trained, or the tables missing: no verdict
    assert claims.repair_trains(_write(tmp_path / "plain", ap=AP), SCALE) is None
    assert claims.repair_trains(_write(tmp_path / "empty"), SCALE) is None
    # without the repair − ours comparison: it cannot be judged
    t = _write(tmp_path / "partial", ap=up)
    paired = t.get(f"table1_paired_all_{SCALE}")
    paired[paired["comparison"] != f"{REPAIR} {MINUS} hdm"].to_csv(tmp_path / "partial" / f"table1_paired_all_{SCALE}.csv",
                                                                   index=False)  # fmt: skip
    assert claims.repair_trains(Tables(tmp_path / "partial"), SCALE)["verdict"] == "cannot be judged"


def test_both_claims_are_in_the_verdict_table(tmp_path):
    _write(tmp_path, _finding({"gaussian": GAUSS, "hdm": [0.5, 0.6, 0.4]}), {**AP, REPAIR: [0.4, 0.42, 0.41]})
    rows = claims.verdict_rows(SCALE, tmp_path).set_index("claim")
    placing = [c for c in rows.index if "places the joints it finds" in c]
    repaired = [c for c in rows.index if "(ours, repaired)" in c]
    assert len(placing) == len(repaired) == 1
    assert rows.loc[placing[0], "verdict"] == rows.loc[repaired[0], "verdict"] == "yes"


def test_finding_placing_headline_table(tmp_path):
    finding = _finding({"gaussian": GAUSS, "dot": [0.9, 0.8, 0.85], "hdm": [0.5, 0.6, 0.4], REPAIR: [0.7, 0.6, 0.8]})
    finding = finding[~((finding["method"] == "dot") & (finding["seed"] == 2))]  # one seed fewer
    t = _write(tmp_path, finding, {**AP, REPAIR: [0.4, 0.42, 0.41]})
    text = headlines.table1_finding_placing(t, SCALE)
    lines = text.strip().split("\n")
    assert "12 common joints" in lines[0]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[0] for r in body] == [paper.label("gaussian") + " + MSE", paper.label("dot") + " + MSE",
                                    paper.label("hdm"), LABELS[REPAIR]]  # fmt: skip
    assert [r[2] for r in body] == ["3", "2", "3", "3"]  # seeds per method
    assert [r[1] for r in body] == ["argmax_shift", "argmax_shift", "local_com", "local_com"]
    assert body[2][4] == "0.50 ± 0.10" and body[0][6] == "0.39"  # mean error on the common joints, oracle floor
    assert headlines.table1_finding_placing(Tables(tmp_path / "missing"), SCALE) is None
    assert "table1_finding_placing" in headlines.HEADLINES


def test_finding_placing_figure(tmp_path):
    table = _finding({"gaussian": GAUSS, "hdm": [0.5, 0.6, 0.4], REPAIR: [0.7, 0.6, 0.8]})
    fig = plots.finding_placing_figure(table, LABELS, {"gaussian": 0.39, "hdm": 0.0})
    try:
        assert len(fig.axes) == 3
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [LABELS[m] for m in ("gaussian", "hdm", REPAIR)]
        assert "found" in fig.axes[0].get_xlabel() and "median" in fig.axes[2].get_xlabel()
        written = plots.save_figure(fig, "table1_finding_placing_smoke", folder=tmp_path)
    finally:
        plt.close(fig)
    assert sorted(p.suffix for p in written) == [".pdf", ".png"]
    assert all(p.is_file() and p.stat().st_size > 0 and p.parent == tmp_path for p in written)
    plt.close(plots.finding_placing_figure(table))  # no labels, no floors


# ---------------------------------------------------------------------------------------------------------
# hdm.analysis.check: the new tables compare as intended


def _by(rows: list[dict], number: str) -> list[dict]:
    return [r for r in rows if r["number"] == number]


def test_check_specs_of_the_new_tables():
    for name in ("table1_paired_all", "table1_finding_placing", "table1_finding_placing_paired", "table1_decoders",
                 "table1_resolution_64x48", "hdm_dynamics_shift"):
        assert name in SPECS


def test_check_finding_placing_joints_are_deterministic_shares_within_noise():
    spec = SPECS["table1_finding_placing"]
    a = _finding({"gaussian": GAUSS, "hdm": [0.5, 0.6, 0.4]})
    same = compare_table("table1_finding_placing", spec, a, a.copy())
    assert not any(r["fails"] for r in same)
    joints = _by(same, "joints_mean")
    assert len(joints) == 2 and all(r["kind"] == "deterministic" and r["agrees"] for r in joints)
    # found_share within its seed noise agrees; the spread of 0.01 per seed gives std 0.01
    noisy = a.assign(found_share=a["found_share"] + 0.005)
    shares = _by(compare_table("table1_finding_placing", spec, a, noisy), "found_share")
    assert [r["kind"] for r in shares] == ["seeds", "seeds"] and all(r["agrees"] and not r["fails"] for r in shares)
    moved = _by(compare_table("table1_finding_placing", spec, a, a.assign(found_share=a["found_share"] + 0.2)),
                "found_share")  # fmt: skip
    assert all(r["agrees"] is False and not r["fails"] for r in moved)  # outside the spread, yet never a failure
    # one joint more on one seed: a deterministic number differs, the check fails
    b = a.copy()
    b.loc[(b["method"] == "hdm") & (b["seed"] == 1), "joints"] += 1
    rows = compare_table("table1_finding_placing", spec, a, b)
    failing = [r for r in rows if r["fails"]]
    assert len(failing) == 1 and failing[0]["number"] == "joints_mean" and failing[0]["row"] == "hdm"
    assert failing[0]["kind"] == "deterministic"


def test_check_paired_tables_compare_means_per_comparison_and_metric():
    final = _final(AP)
    paired = _paired(final, NAMES)
    for name in ("table1_paired_all", "table1_finding_placing_paired"):
        rows = compare_table(name, SPECS[name], paired, paired.assign(mean=paired["mean"] + 1e-4))
        means = _by(rows, "mean difference")
        assert len(means) == len(paired) and all(r["kind"] == "seeds" and r["agrees"] for r in means)
        assert {r["row"] for r in means} == {f"{c} / {m}" for c, m in zip(paired["comparison"], paired["metric"])}
        assert not any(r["fails"] for r in rows) and not _by(rows, "per_seed")
    far = compare_table("table1_paired_all", SPECS["table1_paired_all"], paired, paired.assign(mean=paired["mean"] + 1))
    assert all(r["agrees"] is False for r in _by(far, "mean difference")) and not any(r["fails"] for r in far)
    fewer = compare_table("table1_paired_all", SPECS["table1_paired_all"], paired, paired.iloc[1:])
    missing = [r for r in fewer if r["tolerance"] == "missing"]
    assert len(missing) == 1 and missing[0]["row"] == f"dot {MINUS} gaussian / AP" and not missing[0]["fails"]


def test_check_decoders_resolution_and_shift_tables_never_fail_on_numbers():
    on_val = pd.DataFrame([("hdm", s, d, 0.3 + 0.01 * s + (d == "local_com") * 0.05) for s in SEEDS
                           for d in ("argmax_shift", "local_com")], columns=["model", "seed", "decoder", "AP"])
    decoders = summarise_over_seeds(on_val, ["model", "decoder"], ["AP"])
    decoders.insert(2, "chosen", decoders["decoder"] == "local_com")
    rows = compare_table("table1_decoders", SPECS["table1_decoders"], decoders,
                         decoders.assign(AP_mean=decoders["AP_mean"] + 0.002))  # fmt: skip
    ap = _by(rows, "AP")
    assert [r["kind"] for r in ap] == ["seeds", "seeds"] and all(r["agrees"] for r in ap)
    assert {r["row"] for r in ap} == {"hdm / argmax_shift", "hdm / local_com"} and not any(r["fails"] for r in rows)
    flipped = compare_table("table1_decoders", SPECS["table1_decoders"], decoders, decoders.assign(chosen=~decoders["chosen"]))
    assert not any(r["fails"] for r in flipped)  # another pick is reported, not failed
    resolution = pd.DataFrame({"model": ["Gaussian", "Gaussian"], "size": ["base", "paper"], "input": ["128x96", "256x192"],
                               "heatmap": ["32x24", "64x48"], "epochs": [5, 5], "AP": [0.5, 0.6]})  # fmt: skip
    rows = compare_table("table1_resolution_64x48", SPECS["table1_resolution_64x48"], resolution,
                         resolution.assign(AP=[0.1, 0.9]))  # fmt: skip
    assert {r["kind"] for r in _by(rows, "AP")} == {"single run"} and not any(r["fails"] for r in rows)
    assert {r["row"] for r in rows} == {"Gaussian / base", "Gaussian / paper"}
    shift = pd.DataFrame({"variant": ["hdm"] * 3 + ["gaussian"] * 3, "shift": [0.0, 0.5, 2.0] * 2,
                          "mean_emd": np.arange(6.0), "lowered_share": np.linspace(0, 1, 6)})  # fmt: skip
    rows = compare_table("hdm_dynamics_shift", SPECS["hdm_dynamics_shift"], shift, shift.assign(mean_emd=-shift["mean_emd"]))
    assert len(rows) == 12 and {r["kind"] for r in rows} == {"single run"} and not any(r["fails"] for r in rows)


def test_check_fails_when_the_placing_verdict_moves(tmp_path):
    _write(tmp_path / "committed", _finding({"gaussian": GAUSS, "hdm": [0.5, 0.6, 0.4]}), AP)
    _write(tmp_path / "rerun", _finding({"gaussian": GAUSS, "hdm": [1.1, 1.0, 1.0]}), AP)
    frame = compare_tables(tmp_path / "committed", tmp_path / "rerun", SCALE)
    flips = frame[(frame["kind"] == "verdict") & frame["fails"]]
    assert len(flips) == 1 and "places the joints it finds" in flips["row"].iloc[0]
    assert flips[["committed", "rerun"]].iloc[0].tolist() == ["yes", "cannot be judged"]


def test_the_shift_headline_reads_each_models_rows_at_its_shifts(tmp_path):
    from hdm.analysis import headlines

    rows = [{"variant": v, "shift": s, "mean_emd": 1.0, "mean_relative_change": change, "lowered_share": lowered,
             "no_positive_share": dead}
            for v, dead, values in (("hdm", 0.25, {0.0: (0, 0), 0.1: (-0.01, 0.5), 0.5: (-0.02, 0.4), 1.0: (2.0, 0.0)}),
                                    ("gaussian", 0.0, {0.0: (0, 0), 0.1: (-0.2, 0.98), 0.5: (-0.4, 0.9), 1.0: (1.2, 0.01)}))
            for s, (change, lowered) in values.items()]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "hdm_dynamics_shift_long.csv", index=False)
    lines = headlines.dynamics_shift(Tables(tmp_path), "long").splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model (seed 0) |")
    assert lines[2] == "| `hdm` | 25 % | 50 % | 40 % | −1.0 % | −2.0 % | +200.0 % |"
    assert lines[3] == "| `gaussian` | 0 % | 98 % | 90 % | −20.0 % | −40.0 % | +120.0 % |"
    assert headlines.dynamics_shift(Tables(tmp_path), "default") is None


def test_tables_from_before_a_rerun_sweep_are_not_labelled_with_its_pick(tmp_path):
    # a Table 1 summary in the format before issue 19 (no label column) beside a dynamics sweep rerun since: the
    # sweep's pick need not be the setting that Table 1 trained, so it is not named
    from hdm.analysis import headlines

    pd.DataFrame({"variant": ["hdm", "hdm+lr:3e-4"], "supplier": ["relu", "relu"],
                  "PCK_mean": [0.2, 0.6]}).to_csv(tmp_path / "hdm_dynamics_sweep_long.csv", index=False)
    pd.DataFrame({"method": ["hdm"], "AP_mean": [0.02], "AP_std": [0.01], "n": [3]}).to_csv(
        tmp_path / "table1_summary_long.csv", index=False)
    assert headlines._ours(Tables(tmp_path), "long") == "hdm+lr:3e-4"  # no shift table: the same rerun
    pd.DataFrame({"variant": ["hdm"], "shift": [0.0]}).to_csv(tmp_path / "hdm_dynamics_shift_long.csv", index=False)
    assert headlines._ours(Tables(tmp_path), "long") is None
    assert headlines._label(Tables(tmp_path), "long", "hdm") == "Our method (the earlier sweep's pick)"
    pd.DataFrame({"method": ["hdm"], "label": ["Our method (lr 3e-4)"], "AP_mean": [0.02], "AP_std": [0.01],
                  "n": [3]}).to_csv(tmp_path / "table1_summary_long.csv", index=False)
    assert headlines._ours(Tables(tmp_path), "long") == "hdm+lr:3e-4"


# ---------------------------------------------------------------------------------------------------------
# hdm.analysis.headlines: the README blocks of the long section (paired comparisons, heatmap size, longer schedule)


def _cells(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.strip().split("\n")[2:]
            if line.startswith("|")]  # fmt: skip


def test_paired_headline_one_row_per_comparison_in_points_and_px(tmp_path):
    t = _write(tmp_path, ap={**AP, REPAIR: [0.40, 0.42, 0.41]})
    rows = _cells(headlines.table1_paired(t, SCALE))
    assert len(rows) == len(table1_pairs(list(AP) + [REPAIR]))  # 5 methods: 10 pairs
    by_name = {r[0]: r for r in rows}
    assert set(by_name) >= {"dot − Gaussian", "ours − Gaussian", "ours (supplier softplus) − ours",
                            "ours, repaired: head bias 0.1 at the start − ours (supplier softplus)"}
    # ours − Gaussian: AP −0.30, −0.29, −0.30 (points −29.7 on average); err_hm = 2 − AP: +0.297 px
    row = by_name["ours − Gaussian"]
    assert row[1] == "3" and row[2].startswith("−29.7 [") and row[5].startswith("+0.30 [")
    low, high = (float(x.replace("−", "-")) for x in row[2].split("[")[1].rstrip("]").split(", "))
    assert low < -29.7 < high
    assert "table1_paired" in headlines.HEADLINES and headlines.table1_paired(Tables(tmp_path / "no"), SCALE) is None


def _resolution(pck: dict[str, tuple[float, float]]) -> pd.DataFrame:
    rows = []
    for model, values in pck.items():
        for size, hw, value in zip(("base", "paper"), (("128x96", "32x24"), ("256x192", "64x48")), values):
            rows.append({"model": model, "size": size, "input": hw[0], "heatmap": hw[1], "epochs": 5, "AP": value / 2,
                         "PCK": value, "err_hm": 1.0, "err_px": 10 * (1 - value)})  # fmt: skip
    return pd.DataFrame(rows)


def test_resolution_headline_orders_the_models_at_each_size(tmp_path):
    same = {LABELS["gaussian"]: (0.8, 0.7), LABELS["hdm"]: (0.3, 0.2), LABELS["hdm+supplier:softplus"]: (0.6, 0.5)}
    plots.save_table(_resolution(same), f"table1_resolution_64x48_{SCALE}", tmp_path)
    text = headlines.table1_resolution(Tables(tmp_path), SCALE)
    rows = _cells(text)
    assert [r[0] for r in rows] == list(same) and rows[0][1:] == ["5", "80.0", "70.0", "40.0", "35.0", "2.0", "3.0"]
    assert "32×24 heatmaps: Gaussian > ours (supplier softplus) > ours" in text
    assert "(the same order at both sizes)" in text
    swapped = {**same, LABELS["hdm"]: (0.3, 0.9)}
    plots.save_table(_resolution(swapped), f"table1_resolution_64x48_{SCALE}", tmp_path)
    text = headlines.table1_resolution(Tables(tmp_path), SCALE)
    assert "64×48 heatmaps: ours > Gaussian > ours (supplier softplus)" in text
    assert "(the order changes with the heatmap size)" in text
    assert headlines.table1_resolution(Tables(tmp_path / "no"), SCALE) is None


def test_longer_headline_reads_ap_at_each_checkpoint(tmp_path):
    epochs = pd.DataFrame({"epoch": range(1, 41), "lr": 1e-3, "AP": [e / 100 for e in range(1, 41)]})
    gains = pd.concat([window_gains(epochs, "AP", 5).assign(model=name) for name in ("Gaussian (40)", "ours (40)")],
                      ignore_index=True)  # fmt: skip
    gains = gains[["model", *gains.columns[:-1]]]
    plots.save_table(gains, f"table1_longer_baseline_{SCALE}", tmp_path)
    rows = _cells(headlines.table1_longer(Tables(tmp_path), SCALE))
    assert [r[0] for r in rows] == ["Gaussian (40)", "ours (40)"]
    assert rows[0][1:] == ["1.0", "5.0", "10.0", "15.0", "20.0", "25.0", "30.0", "35.0", "40.0"]  # epochs 1, 5, …, 40
    # a table from before the model column (the Gaussian run alone): no block, rather than an unlabelled row
    plots.save_table(gains.drop(columns="model"), f"table1_longer_baseline_{SCALE}", tmp_path / "old")
    assert headlines.table1_longer(Tables(tmp_path / "old"), SCALE) is None


# ---------------------------------------------------------------------------------------------------------
# hdm.analysis.in_short.in_short: the README's opening summary


def _dynamics(folder, pck: dict[str, float], no_positive: dict[str, float], lowered: dict[str, float]):
    """The dynamics notebook's sweep and shift tables at the long scale (one seed per variant)."""
    supplier = {"gaussian": "-", "hdm+supplier:softplus": "softplus"}
    pd.DataFrame([{"variant": v, "PCK_mean": p, "PCK_std": float("nan"), "n": 1, "supplier": supplier.get(v, "relu")}
                  for v, p in pck.items()]).to_csv(
        folder / f"hdm_dynamics_sweep_{SCALE}.csv", index=False)
    rows = [{"variant": v, "shift": s, "mean_emd": 1.0, "mean_relative_change": -0.01 * s,
             "lowered_share": lowered.get(v, 0.0) if s else 0.0, "no_positive_share": no_positive.get(v, 0.0)}
            for v in pck for s in (0.0, 0.1)]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / f"hdm_dynamics_shift_{SCALE}.csv", index=False)


def test_in_short_speaks_for_the_largest_scale_in_numbers_from_the_tables(tmp_path):
    assert in_short.in_short(tmp_path) is None  # no Table 1 anywhere: nothing to summarise
    worse = [1.40, 1.60, 1.30]
    t = _write(tmp_path, _finding({"gaussian": GAUSS, "dot": [1.2, 1.3, 1.1], "hdm": worse}),
               {**AP, REPAIR: [0.40, 0.42, 0.41]})  # fmt: skip
    _write(tmp_path, ap={"gaussian": [0.1, 0.1, 0.1], "dot": [0.0, 0.0, 0.0], "hdm": [0.0, 0.0, 0.0]}, scale="default")
    _dynamics(tmp_path, {"hdm": 0.238, "hdm+lr:3e-4": 0.599, STRICT_SCREEN: 0.137, REPAIR: 0.40,
                         "hdm+supplier:softplus": 0.754, "gaussian": 0.843},
              no_positive={"hdm": 0.35, STRICT_SCREEN: 1.0}, lowered={"hdm+lr:3e-4": 0.62, "gaussian": 0.99})
    assert in_short.headline_scale(Tables(tmp_path)) == SCALE  # long over default
    text = in_short.in_short(tmp_path)
    assert text.startswith("**In short**") and text.endswith("\n") and "\n" not in text[:-1]
    # Table 1: every model's AP, mean ± std over seeds, in the summary's order, and the ranking's verdict
    assert "At the long scale (3 seeds on the test split), AP: Gaussian 61.0 ± 1.0, dot 50.3 ± 1.5" in text
    assert "ours (`hdm+lr:3e-4`) 31.3 ± 1.5" in text and "ours, repaired: head bias 0.1 at the start 41.0 ± 1.0" in text
    assert "**does not reproduce** (here, by AP: Gaussian > dot > ours)" in text
    # finding vs placing: shares found and the paired placing difference with its interval
    assert "Gaussian 51 %, dot 61 %, ours 71 %" in text  # found_share 0.5 + 0.01 seed + 0.1 × the method's index
    assert "ours +0.42 [" in text and "**placed less precisely**" in text
    # the mechanism: the shift test, the strict mode and the screens' accuracies
    assert "it falls for 62 % of the joints of relu-trained maps, `hdm+lr:3e-4`, and for 99 % on Gaussian" in text
    assert "PCK ends at 13.7 with 100 % of validation maps all ≤ 0 (guarded relu: 23.8, 35 %)" in text
    assert "the best repair, head bias 0.1 at the start, 40.0, softplus suppliers 75.4, Gaussian targets 84.3" in text
    # the repair's verdict (repair − ours > 0 on every seed)
    assert "trains better than ours: **yes**" in text
    # write_results puts it beside the headline tables
    written = verdicts.write_results(tmp_path, tmp_path / "out")
    assert (tmp_path / "out" / "readme" / "in_short.md").read_text() == text
    assert tmp_path / "out" / "readme" / "in_short.md" in written


# ---------------------------------------------------------------------------------------------------------
# Training stability: does a run's optimisation settle (hdm.analysis.stats.training_stability)


def _epochs(loss: list[float], pck: list[float], grad: list[float] | None = None) -> pd.DataFrame:
    table = pd.DataFrame({"epoch": range(1, len(loss) + 1), "lr": 1e-3, "train_loss": loss, "PCK": pck})
    return table.assign(head_grad=grad) if grad is not None else table


def test_training_stability_reads_the_rise_the_drop_and_the_gradient_spread():
    runs = {("hdm", 0): _epochs([9, 6, 5, 7, 8], [0.5, 0.6, 0.55, 0.4, 0.45], [100, 10, 20, 10, 40]),
            ("gaussian", 0): _epochs([4, 3, 2, 2, 1], [0.1, 0.3, 0.5, 0.6, 0.7], [1, 1, 2, 1, 1]),
            ("dot", 0): _epochs([4, 3, 2, 2, 1], [0.1, 0.3, 0.5, 0.6, 0.7])}  # no head_grad logged
    shuffled = stack_metrics(runs).sample(frac=1.0, random_state=0)  # rows in any order
    table = training_stability(shuffled, "PCK").set_index("method")
    ours = table.loc["hdm"]
    assert (ours["epochs"], ours["min_epoch"], ours["best_epoch"]) == (5, 3, 2)
    assert ours["train_loss_first"] == 9 and ours["train_loss_min"] == 5 and ours["train_loss_last"] == 8
    assert ours["loss_rise"] == pytest.approx(8 / 5 - 1) and ours["drop"] == pytest.approx(0.6 - 0.45)
    assert ours["head_grad_median"] == 20 and ours["head_grad_spread"] == pytest.approx(100 / 20)
    steady = table.loc["gaussian"]
    assert steady["loss_rise"] == 0 and steady["drop"] == 0 and steady["min_epoch"] == 5  # ends at its best
    assert steady["head_grad_spread"] == 2
    assert np.isnan(table.loc["dot", "head_grad_spread"]) and np.isnan(table.loc["dot", "head_grad_median"])
    with pytest.raises(KeyError, match="train_loss"):
        training_stability(shuffled.drop(columns="train_loss"), "PCK")


def test_stability_headline_and_sentence(tmp_path):
    runs = {(m, s): _epochs(loss, [p + 0.01 * s for p in pck], grad) for s in SEEDS
            for m, loss, pck, grad in (("gaussian", [4, 3, 2], [0.5, 0.6, 0.7], [1, 1, 2]),
                                       ("hdm", [9, 6, 7.2], [0.5, 0.6, 0.3], [100, 10, 20]))}  # fmt: skip
    t = _write(tmp_path, ap={"gaussian": [0.6, 0.62, 0.61], "hdm": [0.3, 0.33, 0.31]})
    plots.save_table(training_stability(stack_metrics(runs), "PCK"), f"table1_stability_{SCALE}", tmp_path)
    rows = _cells(headlines.table1_stability(t, SCALE))
    assert [r[0] for r in rows] == [paper.label("gaussian") + " + MSE", paper.label("hdm")]
    assert rows[1][1:] == ["3", "20.0 ± 0.0 %", "2.0 ± 0.0", "61.0 ± 1.0 (epoch 2.0 ± 0.0)", "31.0 ± 1.0", "5.0 ± 0.0"]
    assert rows[0][2] == "0.0 ± 0.0 %" and rows[0][6] == "2.0 ± 0.0"
    assert "table1_stability" in headlines.HEADLINES and headlines.table1_stability(Tables(tmp_path / "no"), SCALE) is None
    text = in_short.in_short(tmp_path)
    assert ("ours' training loss ends 20.0 % above its minimum (epoch 2.0) and its PCK@0.1 30.0 points below its best "
            "epoch's (epoch 2.0); the head's gradient norm varies 5.0× from epoch to epoch (Gaussian 2.0×).") in text


def test_fig2_rows_are_named_by_the_setting_their_table_records(tmp_path):
    summary = pd.DataFrame([{"method": m, "setting": s, "loss": loss, "spearman_mean": -0.9, "spearman_std": 0.01,
                             "inconsistent_epochs_mean": 1.0, "inconsistent_epochs_std": 0.0, "n": 3}
                            for m, s in (("gaussian", "gaussian"), ("hdm", "hdm+lr:3e-4"))
                            for loss in ("pixel-wise MSE", "ours (EMD)")])  # fmt: skip
    summary.to_csv(tmp_path / f"fig2_consistency_{SCALE}.csv", index=False)
    # a Table 1 summary from before the sweep's rerun beside a shift table: Table 1's "hdm" is an earlier pick …
    pd.DataFrame({"method": ["hdm"], "AP_mean": [0.1], "n": [3]}).to_csv(tmp_path / f"table1_summary_{SCALE}.csv")
    pd.DataFrame({"variant": ["hdm"], "shift": [0.0]}).to_csv(tmp_path / f"hdm_dynamics_shift_{SCALE}.csv")
    t = Tables(tmp_path)
    assert headlines._ours(t, SCALE) is None
    # … but Fig. 2's table says which setting it trained, so its rows and its verdict name that one
    rows = _cells(headlines.fig2_consistency(t, SCALE))
    assert [r[0] for r in rows] == [paper.label("gaussian")] * 2 + [paper.label("hdm+lr:3e-4")] * 2
    assert "our loss of our model (`hdm+lr:3e-4`)" in claims.fig2_tracking(t, SCALE)["numbers"]
