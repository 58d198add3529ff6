"""The training / evaluation engine at the smoke scale: config and presets, each method's loss, a whole run and
its files, the cache, bitwise resume after an interruption, evaluate(), the command line, and clear errors."""

from __future__ import annotations

import json
import re
import shutil
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hdm import cli, runs
from hdm.data import DatasetNotFoundError, EmptyDatasetError, coco_paths
from hdm.config import Config, parse_variant, preset, variant_preset
from hdm.engine import build_data, evaluate, train
from hdm.engine import evaluation as engine_evaluation
from hdm.engine.data import whole_image_prefix
from hdm.methods import METHODS, method_loss
from hdm.geometry import heatmap_to_image
from hdm.loss import HeatmapMSELoss
from hdm.targets import gaussian_heatmaps


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """HDM_DATA (the smoke split, generated once) and HDM_RUNS in temporary folders for the whole module."""
    base = tmp_path_factory.mktemp("engine")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HDM_DATA", str(base / "data"))
        mp.setenv("HDM_RUNS", str(base / "runs"))
        yield base


@pytest.fixture
def runs_dir(roots, tmp_path, monkeypatch):
    """A fresh, empty runs root for one test (the smoke data stay shared)."""
    monkeypatch.setenv("HDM_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


SMOKE = dict(progress=False)


@pytest.fixture(scope="module")
def gaussian_run(roots):
    return train(preset("smoke", "gaussian", seed=0), **SMOKE)


# ------------------------------------------------------------------------------------------------ config


def test_presets_follow_the_recipes():
    smoke, default = preset("smoke", "hdm"), preset("default", "gaussian")
    for cfg in (smoke, default):
        assert cfg.dataset == "synthetic" and cfg.model == "hrnet_tiny"
        assert cfg.input_hw == (128, 96) and cfg.heatmap_hw == (32, 24)  # (H, W)
    assert Config() == preset("default", "hdm")  # the dataclass defaults are the default scale
    assert smoke.synthetic_preset == "smoke" and smoke.epochs == 2
    assert default.synthetic_preset == "default" and default.epochs == 10 and default.lr == 1e-3
    coco, mpii = preset("paper", "hdm"), preset("paper", "hdm", dataset="mpii")
    assert (coco.dataset, coco.model, coco.input_hw, coco.heatmap_hw) == ("coco", "hrnet_w48", (256, 192), (64, 48))
    assert (mpii.model, mpii.input_hw, mpii.heatmap_hw) == ("hrnet_w32", (256, 256), (64, 64))
    for cfg in (coco, mpii):  # reference/facts.md
        assert (cfg.epochs, cfg.lr_steps, cfg.lr_factor, cfg.lr, cfg.sigma) == (210, (170, 200), 0.1, 1e-3, 2.0)
        assert cfg.batch_size == 128 and cfg.flip_test and cfg.flip
    assert (coco.scale_factor, coco.rotation_factor, coco.half_body_prob) == (0.35, 45.0, 0.3)
    assert (mpii.scale_factor, mpii.rotation_factor, mpii.half_body_prob) == (0.25, 30.0, 0.0)
    with pytest.raises(ValueError, match="coco or mpii"):
        preset("paper", "hdm", dataset="synthetic")
    with pytest.raises(ValueError, match="scale must be one of"):
        preset("huge", "hdm")


def test_decoder_defaults_by_method_and_stays_a_parameter():
    assert {m: preset("smoke", m).resolved().decoder for m in METHODS} == {
        "gaussian": "argmax_shift", "dot": "argmax_shift",
        "hdm": "local_com", "hdm_naive": "local_com", "hdm_sinkhorn": "local_com",
    }  # fmt: skip
    assert preset("smoke", "hdm", decoder="argmax_shift").resolved().decoder == "argmax_shift"


def test_unknown_keys_methods_and_bad_values_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['lr_step'\].*did you mean 'lr_steps'"):
        preset("smoke", "hdm", lr_step=3)
    with pytest.raises(ValueError, match="method must be one of"):
        preset("smoke", "mse")
    with pytest.raises(ValueError, match="expects"):
        preset("smoke", "hdm", epochs="many")
    with pytest.raises(ValueError, match="heatmap_hw must be input_hw / 4"):
        preset("smoke", "hdm", heatmap_hw=(64, 48))
    with pytest.raises(ValueError, match="lr_steps must be strictly increasing"):
        preset("smoke", "hdm", lr_steps=(5, 3))
    with pytest.raises(ValueError, match="device must be"):
        preset("smoke", "hdm", device="tpu")
    with pytest.raises(ValueError, match="unknown config key"):
        Config.from_dict({"methods": "hdm"})


def test_string_overrides_are_parsed_by_field_type():
    cfg = preset("smoke", "hdm").replace(lr_steps="5,8", max_val_samples="none", flip_test="true", lr="3e-4",
                                         input_hw="[160, 128]", heatmap_hw="40,32")  # fmt: skip
    assert cfg.lr_steps == (5, 8) and cfg.max_val_samples is None and cfg.flip_test is True and cfg.lr == 3e-4
    assert cfg.input_hw == (160, 128) and cfg.heatmap_hw == (40, 32)
    # configs saved before (H, W) named sizes (w, h): still read, converted
    legacy = preset("smoke", "hdm").replace(input_size="128,160", heatmap_size=[32, 40])
    assert legacy.input_hw == (160, 128) and legacy.heatmap_hw == (40, 32)
    with pytest.raises(ValueError, match="not both"):
        preset("smoke", "hdm").replace(input_size="128,160", input_hw="160,128")
    assert preset("smoke", "hdm", lr_steps="").lr_steps == ()
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # json round trip


def test_variants_are_presets_with_overrides():
    assert parse_variant("hdm_naive") == ("hdm_naive", {})
    assert parse_variant("hdm+supplier:softplus+lr:3e-4") == ("hdm", {"supplier": "softplus", "lr": "3e-4"})
    cfg = variant_preset("smoke", "hdm+supplier:softplus+lr:3e-4", seed=2)
    assert cfg == preset("smoke", "hdm", seed=2, supplier="softplus", lr=3e-4)
    for bad, match in (("hdmx", "unknown method"), ("hdm+supplier", "key:value"), ("hdm+:1", "key:value"),
                       ("hdm+supplier=softplus", "key:value")):
        with pytest.raises(ValueError, match=match):
            parse_variant(bad)
    with pytest.raises(ValueError, match="unknown config key"):
        variant_preset("smoke", "hdm+suppliers:softplus")
    with pytest.raises(ValueError, match="supplier must be one of"):
        variant_preset("smoke", "hdm+supplier:sigmoid")
    from hdm import paper

    assert paper.label("hdm") == paper.METHOD_LABELS["hdm"]
    assert paper.label("hdm+supplier:softplus+lr:3e-4") == f"{paper.METHOD_LABELS['hdm']} (supplier softplus, lr 3e-4)"


def test_hash_covers_what_changes_results_only():
    base = preset("smoke", "hdm")
    same = [base.replace(num_workers=3), base.replace(device="cpu"), base.replace(decoder="local_com"),
            base.replace(sinkhorn_eps=0.5), base.replace(val_boxes="detections")]  # fmt: skip
    assert all(runs.run_hash(c) == runs.run_hash(base) for c in same)
    other = [base.replace(lr=2e-3), base.replace(seed=1), base.replace(method="gaussian"), base.replace(sigma=3.0),
             base.replace(decoder="argmax_shift"), base.replace(data_seed=1), base.replace(supplier="softplus")]  # fmt: skip
    assert len({runs.run_hash(c) for c in other} | {runs.run_hash(base)}) == len(other) + 1
    coco = preset("smoke", "hdm", dataset="coco")
    assert runs.run_hash(coco.replace(data_seed=5)) == runs.run_hash(coco)  # synthetic-only fields do not matter on coco
    assert runs.run_hash(coco.replace(val_boxes="detections")) != runs.run_hash(coco)
    gaussian = preset("smoke", "gaussian")
    assert runs.run_hash(gaussian.replace(supplier="softmax")) == runs.run_hash(gaussian)  # MSE methods have no suppliers
    assert runs.run_dir(base).name == f"hdm-smoke-{runs.run_hash(base)}"


# ------------------------------------------------------------------------------------------------ methods


def _loss(method, **options):
    """The training loss of ``method`` with the smoke preset's options and ``options``."""
    return method_loss(method, preset("smoke", method, **options))


def _joints_and_maps(height=16, width=12):
    """Joints at sub-pixel positions and, per joint, the bilinear splat of unit mass (its exact distribution)."""
    joints = torch.tensor([[[3.3, 4.6], [7.0, 9.0], [5.75, 2.25]]], dtype=torch.float64)
    maps = torch.zeros(1, 3, height, width, dtype=torch.float64)
    for k, (x, y) in enumerate(joints[0].tolist()):
        x0, y0, fx, fy = int(x), int(y), x - int(x), y - int(y)
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            maps[0, k, y0 + dy, x0 + dx] += w
    return joints, maps, torch.ones(1, 3, dtype=torch.float64)


def test_each_method_is_zero_on_its_own_perfect_target():
    joints, splat, vis = _joints_and_maps()
    size = tuple(splat.shape[-2:])
    gauss, _ = gaussian_heatmaps(joints, vis, size, 2.0)
    dot = torch.zeros_like(splat)
    for k, (x, y) in enumerate(torch.floor(joints[0] + 0.5).long().tolist()):
        dot[0, k, y, x] = 1.0
    assert _loss("gaussian")(gauss, joints, vis) == 0
    assert _loss("dot")(dot, joints, vis) == 0
    assert _loss("hdm")(splat, joints, vis) < 1e-4  # sub-pixel demanders: the splat is exact (up to the
    # suppliers' 1e-6 guard mass)
    assert _loss("hdm_naive")(dot, joints, vis) < 1e-4  # one demander at the rounded pixel
    # and each is positive on another method's target
    assert _loss("hdm")(dot, joints, vis) > 0.1 and _loss("hdm_naive")(splat, joints, vis) > 0.1
    assert _loss("gaussian")(dot, joints, vis) > 0 and _loss("dot")(gauss, joints, vis) > 0
    # softplus keeps mass (log 2 per pixel) on the splat's zeros: no longer a perfect match
    assert _loss("hdm", supplier="softplus")(splat, joints, vis) > 1.0
    # entropic OT is close to, and above, the exact value on the same maps
    exact = _loss("hdm")(gauss, joints, vis)
    entropic = _loss("hdm_sinkhorn", sinkhorn_eps=0.05)(gauss, joints, vis)
    assert abs(entropic - exact) < 0.05 * exact
    with pytest.raises(ValueError, match="unknown method"):
        method_loss("l1", preset("smoke", "hdm"))


def test_whole_image_prefix_keeps_images_whole():
    ids = np.array([1, 1, 2, 3, 3, 3, 4])
    assert whole_image_prefix(ids, None).tolist() == list(range(7))
    assert whole_image_prefix(ids, 4).tolist() == [0, 1, 2]  # image 3 would be cut
    assert whole_image_prefix(ids, 6).tolist() == [0, 1, 2, 3, 4, 5]
    assert whole_image_prefix(ids, 1).tolist() == [0, 1]  # at least the first image


# ------------------------------------------------------------------------------------------------ a run


def test_smoke_run_writes_every_file(gaussian_run):
    run, cfg = gaussian_run, preset("smoke", "gaussian", seed=0).resolved()
    assert run.done and run.dir == runs.run_dir(cfg) and run.config == cfg
    for name in (runs.CONFIG, runs.PROVENANCE, runs.METRICS, runs.LAST, runs.FINAL, runs.PREDICTIONS, runs.RESULTS,
                 runs.LOG, runs.DONE):  # fmt: skip
        assert (run.dir / name).is_file(), name
    with runs.RunLock(run.dir):  # released
        pass
    assert run.config_dict["hash"] == runs.run_hash(cfg)
    assert run.config_dict["identity"]["code"] == runs.code_version()
    df = run.metrics
    assert df["epoch"].tolist() == [1, 2]
    expected = ["epoch", "lr", "train_loss", "val_mse", "val_hdm", "AP", "AP50", "AP75", "APM", "APL", "AR", "PCK",
                "err_px", "err_hm", "supplier_mass", "dead_share", "val_no_positive_share", "head_grad",
                "train_no_positive_share", "train_guard_share"]  # fmt: skip
    assert list(df.columns) == expected and run.accuracy_column == "AP"
    assert (df["lr"] == cfg.lr).all() and (df[["train_loss", "val_mse", "val_hdm", "err_px"]] > 0).all().all()
    prov = run.provenance
    assert prov["seed"] == 0 and prov["finished"] and prov["sessions"][0]["device"].startswith("cpu")
    final = torch.load(run.checkpoint, weights_only=True)
    last = torch.load(run.dir / runs.LAST, weights_only=True)
    assert final["epoch"] == last["epoch"] == 2 and len(last["history"]) == 2
    assert all(torch.equal(final["model"][k], last["model"][k]) for k in final["model"])


def test_predictions_are_consistent_with_the_geometry_and_the_dataset(gaussian_run):
    pred = gaussian_run.predictions()
    data = build_data(gaussian_run.config, train=False)
    n, k = len(data.val), data.num_joints
    assert pred["index"].tolist() == list(range(n))
    assert pred["coords"].shape == pred["image_coords"].shape == (n, k, 2) and pred["maxvals"].shape == (n, k)
    back = heatmap_to_image(pred["coords"], pred["center"], pred["scale"], gaussian_run.config.heatmap_hw)
    np.testing.assert_allclose(pred["image_coords"], back, atol=1e-3)
    assert [int(data.val.records[i].annotation_id) for i in range(n)] == pred["annotation_id"].tolist()
    sample = data.val[3]
    np.testing.assert_array_equal(pred["joints"][3], sample["joints"].numpy())


def test_reported_metrics_match_independent_recomputation(gaussian_run):
    """The last metrics row equals pycocotools on results.json, and val_mse a per-sample loop with final.pt."""
    cfg, row = gaussian_run.config, gaussian_run.metrics.iloc[-1]
    data = build_data(cfg, train=False)
    gt = COCO(str(data.val.ann_file))
    evaluator = COCOeval(gt, gt.loadRes(gaussian_run.results()), "keypoints")
    evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    assert math.isclose(row["AP"], evaluator.stats[0], abs_tol=1e-12)
    assert math.isclose(row["AR"], evaluator.stats[5], abs_tol=1e-12)

    model = gaussian_run.load_model()
    mse = HeatmapMSELoss()
    losses = []
    with torch.no_grad():
        for i in range(len(data.val)):
            s = data.val[i]
            heatmaps = model(s["image"][None])
            target, weight = gaussian_heatmaps(s["joints"][None], s["visibility"][None], heatmaps.shape[-2:], cfg.sigma)
            losses.append(mse(heatmaps, target, weight).item())
    assert math.isclose(row["val_mse"], float(np.mean(losses)), rel_tol=1e-5)


def test_a_finished_run_comes_from_the_cache(gaussian_run):
    stamp = (gaussian_run.dir / runs.FINAL).stat().st_mtime_ns

    def never(epoch, row):
        raise AssertionError("a cached run must not train")

    again = train(preset("smoke", "gaussian", seed=0, num_workers=1, device="cpu"), on_epoch_end=never, **SMOKE)
    assert again.dir == gaussian_run.dir and (gaussian_run.dir / runs.FINAL).stat().st_mtime_ns == stamp


def test_init_from_starts_from_another_runs_final_weights(gaussian_run):
    # fine-tune the standard smoke Gaussian run with a learning rate so small (Adam moves ~lr per step) that the
    # final convolutions must still be the source's
    tiny_steps = preset("smoke", "hdm", seed=0, init_from="gaussian", lr=1e-12)
    assert tiny_steps.init_config() == preset("smoke", "gaussian", seed=0).resolved()
    tuned = train(tiny_steps, **SMOKE)
    assert tuned.dir != gaussian_run.dir and tuned.done
    source = torch.load(gaussian_run.dir / runs.FINAL, weights_only=True)["model"]
    final = torch.load(tuned.dir / runs.FINAL, weights_only=True)["model"]
    scratch = torch.load(train(preset("smoke", "hdm", seed=0, lr=1e-12), **SMOKE).dir / runs.FINAL, weights_only=True)["model"]
    convs = [k for k, v in source.items() if k.endswith("weight") and v.ndim == 4]
    assert convs and all(torch.allclose(final[k], source[k], atol=1e-9, rtol=0) for k in convs)
    assert not torch.allclose(scratch["final_layer.weight"], source["final_layer.weight"])
    # the source's identity is part of ours; without init_from the hash is the from-scratch one
    assert runs.run_hash(tiny_steps) != runs.run_hash(tiny_steps.replace(init_from="gaussian+sigma:3"))
    assert runs.run_hash(tiny_steps.replace(init_from=None)) == runs.run_hash(preset("smoke", "hdm", seed=0, lr=1e-12))
    for bad, match in (("gausian", "unknown method"), ("gaussian+init_from:dot", "may not itself")):
        with pytest.raises(ValueError, match=match):
            preset("smoke", "hdm", init_from=bad)
    with pytest.raises(ValueError, match="model"):
        runs.run_hash(preset("smoke", "hdm", init_from="gaussian", model="hrnet_w32"))


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_numbers(roots, runs_dir, monkeypatch):
    cfg = preset("smoke", "hdm", seed=1)
    whole = train(cfg, **SMOKE)

    monkeypatch.setenv("HDM_RUNS", str(runs_dir.parent / "other"))

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, on_epoch_end=stop_after_first, **SMOKE)
    broken = runs.Run.of(cfg)
    assert not broken.done and broken.metrics["epoch"].tolist() == [1]
    with runs.RunLock(broken.dir):  # released on failure
        pass
    resumed = train(cfg, **SMOKE)
    assert resumed.done and [s["first_epoch"] for s in resumed.provenance["sessions"]] == [1, 2]
    assert (resumed.dir / runs.METRICS).read_bytes() == (whole.dir / runs.METRICS).read_bytes()
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = whole.predictions(), resumed.predictions()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_evaluate_reproduces_the_run_and_caches_per_decoder(gaussian_run, monkeypatch):
    row = gaussian_run.metrics.iloc[-1]
    own = evaluate(gaussian_run, progress=False)  # the run's decoder, no flip
    for key in ("AP", "PCK", "val_mse", "val_hdm", "err_px"):
        assert math.isclose(own[key], row[key], rel_tol=1e-9), key
    other = evaluate(gaussian_run.dir, decoder="local_com", flip_test=True, progress=False)
    assert set(other) == set(own) and other["err_hm"] != own["err_hm"]
    assert (gaussian_run.dir / runs.EVAL_DIR / "local_com-flip1.json").is_file()
    assert (gaussian_run.dir / runs.EVAL_DIR / "local_com-flip1.npz").is_file()

    def no_data(*args, **kwargs):
        raise AssertionError("a cached evaluation must not touch the data")

    monkeypatch.setattr(engine_evaluation, "build_data", no_data)
    assert evaluate(gaussian_run.dir, decoder="local_com", flip_test=True) == other
    with pytest.raises(ValueError, match="unknown decoder"):
        evaluate(gaussian_run, decoder="soft_argmax")


def test_evaluate_refuses_an_unfinished_run(roots, runs_dir):
    cfg = preset("smoke", "gaussian", seed=2)
    runs.Run.of(cfg).write_config(cfg.resolved())
    with pytest.raises(ValueError, match="not finished"):
        evaluate(runs.run_dir(cfg))


# ------------------------------------------------------------------------------------------------ errors, cli


def test_missing_real_datasets_raise_dataset_not_found(roots, runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_DATA", str(tmp_path / "empty"))
    for dataset in ("coco", "mpii"):
        with pytest.raises(DatasetNotFoundError, match="Nothing is downloaded"):
            train(preset("smoke", "hdm", dataset=dataset), **SMOKE)
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # a failed start leaves no run folder


def test_an_empty_dataset_is_a_clear_error(roots, runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_DATA", str(tmp_path))
    paths = coco_paths(split="val2017")
    paths.image_dir.mkdir(parents=True)
    runs.write_json(paths.ann_file, {"images": [{"id": 1, "file_name": "1.jpg", "width": 64, "height": 64}],
                                     "annotations": [], "categories": [{"id": 1, "name": "person"}]})  # fmt: skip
    with pytest.raises(EmptyDatasetError, match="no person"):
        train(preset("smoke", "hdm", dataset="coco"), **SMOKE)


def test_too_few_training_samples_is_a_clear_error(roots, runs_dir):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(preset("smoke", "gaussian", max_train_samples=4, batch_size=8), **SMOKE)


def test_cli_trains_evaluates_and_rejects_bad_input(roots, runs_dir, capsys):
    args = ["train", "--scale", "smoke", "--method", "dot", "--seed", "0", "--no-progress", "--set", "epochs=1"]
    assert cli.main(args) == 0
    run_dir = runs.run_dir(preset("smoke", "dot", epochs=1))
    assert capsys.readouterr().out.strip().endswith(str(run_dir)) and runs.Run(run_dir).done
    assert cli.main(["evaluate", "--run", str(run_dir), "--decoder", "local_com", "--no-progress"]) == 0
    assert "PCK" in json.loads(capsys.readouterr().out)
    assert cli.main(["config", "--scale", "smoke", "--method", "hdm", "--set", "lr=0.01"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lr"] == 0.01 and printed["decoder"] == "local_com" and printed["hash"] in printed["run_dir"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--scale", "smoke", "--method", "hdm", "--set", "bogus=1"])
    assert exit_info.value.code == 2 and "unknown config key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--scale", "smoke", "--method", "mse"])


# ------------------------------------------------------------------------------------------------ nothing silent


@pytest.fixture
def damaged_copy(gaussian_run, runs_dir):
    """A copy of the finished smoke Gaussian run under a fresh runs root, to damage."""
    copy = runs_dir / gaussian_run.dir.name
    shutil.copytree(gaussian_run.dir, copy)
    return copy


@pytest.mark.parametrize("name", [runs.METRICS, runs.FINAL, runs.PREDICTIONS, runs.CONFIG, runs.RESULTS])
def test_a_damaged_cached_run_is_refused_naming_the_file(damaged_copy, name, capsys):
    path = damaged_copy / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated mid-file
    with pytest.raises((runs.DamagedRunError, ValueError), match=re.escape(name)):
        train(preset("smoke", "gaussian", seed=0), **SMOKE)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--scale", "smoke", "--method", "gaussian", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and name in err and "delete" in err


def test_an_edited_file_of_the_same_size_is_caught(damaged_copy):
    path = damaged_copy / runs.METRICS
    text = path.read_text()
    path.write_text(text.replace("0", "1", 1))
    with pytest.raises(runs.DamagedRunError, match="SHA-256"):
        train(preset("smoke", "gaussian", seed=0), **SMOKE)


def test_a_change_of_training_code_is_a_new_run(gaussian_run, monkeypatch):
    cfg = preset("smoke", "gaussian", seed=0)
    assert runs.run_dir(cfg) == gaussian_run.dir and runs.status(gaussian_run) == "done"
    monkeypatch.setattr(runs, "code_version", lambda: "0" * 12)  # what an edit of e.g. loss.py does
    assert runs.run_dir(cfg) != gaussian_run.dir
    assert runs.status(gaussian_run) == "other-code" and gaussian_run.config == cfg.resolved()  # still readable


def test_a_damaged_checkpoint_is_named_with_the_fix(roots, runs_dir):
    cfg = preset("smoke", "hdm", seed=3, epochs=2)

    def stop(epoch, row):
        raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, on_epoch_end=stop, **SMOKE)
    last = runs.run_dir(cfg) / runs.LAST
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(runs.DamagedRunError, match=f"{runs.LAST} cannot be read.*delete it to restart"):
        train(cfg, **SMOKE)


def test_config_ranges_are_checked_when_the_config_is_built():
    for key, value in (("lr", "inf"), ("lr", "nan"), ("rotation_prob", 5), ("scale_factor", -1),
                       ("half_body_prob", -0.1), ("sigma", 0), ("seed", -1)):  # fmt: skip
        with pytest.raises(ValueError, match=f"config key {key}"):
            preset("smoke", "hdm", **{key: value})


def test_cli_user_errors_are_one_line_and_exit_2(roots, runs_dir, gaussian_run, tmp_path, capsys, monkeypatch):
    def one_line_error(args):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(args)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        return err

    assert "CUDA is not available" in one_line_error(
        ["train", "--scale", "smoke", "--method", "hdm", "--set", "device=cuda"]) or torch.cuda.is_available()
    assert "seed" in one_line_error(["config", "--scale", "smoke", "--method", "hdm", "--set", "seed=abc"])
    assert "method" in one_line_error(["config", "--scale", "smoke", "--method", "hdm", "--set", "method=mse"])
    unfinished = runs.Run.of(preset("smoke", "dot", seed=5))
    unfinished.write_config(preset("smoke", "dot", seed=5).resolved())
    assert "not finished" in one_line_error(["evaluate", "--run", str(unfinished.dir)])
    # --set method=... is --method ...
    assert cli.main(["config", "--scale", "smoke", "--method", "hdm", "--set", "method=gaussian"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "gaussian"
    # a runs folder that cannot be written (a file in the way: an OSError even for root, like a read-only disk)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("HDM_RUNS", str(blocker / "runs"))
    assert "not-a-folder" in one_line_error(["train", "--scale", "smoke", "--method", "hdm", "--no-progress"])


def test_notebook_parameters_are_checked_before_any_work():
    from hdm.config import check_parameters

    check_parameters(scale="smoke", seeds=[0, 1], dataset=None, variants=["hdm+supplier:softplus"], n_picks=4,
                     ours_model="hdm", first_epoch=2)  # fmt: skip
    for bad, match in ((dict(scale="huge"), "scale='huge'"), (dict(seeds=[]), "seeds"), (dict(seeds="0"), "seeds"),
                       (dict(dataset="imagenet"), "dataset"), (dict(variants=["hdm+supplier:sigmoid"]), "supplier"),
                       (dict(ours_model="hdmx"), "unknown method"), (dict(n_picks=0), "n_picks")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            check_parameters(**bad)


# ------------------------------------------------------------------------------------------------ pretrained start


def test_part_crops_match_the_drawing_and_flip_left_and_right(roots):
    from hdm.data.parts import FLIP_CLASSES, PART_CLASSES, PartCrops, parts_split

    folder = parts_split(6, seed=0)
    people = list(range(len(__import__("json").loads((folder / "people.json").read_text())["people"])))
    plain = PartCrops(folder, (128, 96), (32, 24), people, train=False)
    item = plain[0]
    assert item["image"].shape == (3, 128, 96) and item["parts"].shape == (32, 24)
    assert 0 < (item["parts"] > 0).float().mean() < 0.9  # a person, and background around it
    assert item["parts"].max() < len(PART_CLASSES)
    names = dict(enumerate(PART_CLASSES))
    mirrored = {"l_": "r_", "r_": "l_"}
    assert all(names[FLIP_CLASSES[c]] == mirrored.get(names[c][:2], names[c][:2]) + names[c][2:]
               for c in range(len(PART_CLASSES)))  # fmt: skip
    assert names[FLIP_CLASSES[PART_CLASSES.index("l_upper_arm")]] == "r_upper_arm"
    # training crops are augmented per (seed, epoch, index): reproducible, and different across epochs
    augmented = PartCrops(folder, (128, 96), (32, 24), people, train=True, seed=0)
    first = augmented[0]["parts"]
    assert torch.equal(first, augmented[0]["parts"])
    augmented.set_epoch(1)
    assert not torch.equal(first, augmented[0]["parts"])


def test_pretrained_start_takes_the_backbone_and_a_fresh_head(roots, runs_dir):
    from hdm.config import pretrain_config
    from hdm.engine.pretraining import pretrain

    cfg = preset("smoke", "hdm", seed=0, init="pretrained", epochs=1)
    assert cfg.identity()["init"]["pretrained"] == pretrain_config(cfg).identity()
    assert runs.run_hash(cfg) != runs.run_hash(cfg.replace(init="scratch"))
    source = pretrain(pretrain_config(cfg), progress=False)
    assert source.done and list(source.metrics.columns) == ["epoch", "lr", "train_loss", "pixel_accuracy", "mean_iou"]
    from hdm.engine.training import initial_model

    model = initial_model(cfg, runs.Run.of(cfg), 17).state_dict()
    backbone = source.state_dict()
    shared = [k for k in model if not k.startswith("final_layer.")]
    assert shared and all(torch.equal(model[k], backbone[k]) for k in shared)
    scratch = initial_model(cfg.replace(init="scratch"), runs.Run.of(cfg), 17).state_dict()
    assert torch.equal(model["final_layer.weight"], scratch["final_layer.weight"])  # HRNet's head init, same seed
    assert not all(torch.equal(model[k], scratch[k]) for k in shared)
    assert train(cfg, **SMOKE).done  # the whole pose run from the pretrained start


# ------------------------------------------------------------------------------------------------ nothing silent, round two

SAMPLES = Path(__file__).parent / "data"


def _coco_layout(root: Path, shift_px: float = 0.0) -> Path:
    """The real COCO sample (4 images, 14 persons) as train2017 and val2017 under ``root/coco``, every labelled
    keypoint moved ``shift_px`` to the right (and back inside the image). Returns ``root``."""
    data = json.loads((SAMPLES / "coco" / "test_coco.json").read_text())
    widths = {image["id"]: image["width"] for image in data["images"]}
    for ann in data["annotations"]:
        kps = ann["keypoints"]
        for j in range(0, len(kps), 3):
            if kps[j + 2] > 0:
                x = kps[j] + shift_px
                kps[j] = x if x < widths[ann["image_id"]] else kps[j] - shift_px
    for split in ("train2017", "val2017"):
        paths = coco_paths(root / "coco", split=split)
        runs.write_json(paths.ann_file, data)
        paths.image_dir.mkdir(parents=True, exist_ok=True)
        for image in (SAMPLES / "coco").glob("*.jpg"):
            shutil.copy(image, paths.image_dir / image.name)
    return root


def _mpii_layout(root: Path) -> Path:
    """The MPII sample (5 persons) as annot/train.json and annot/valid.json under ``root/mpii``. Returns ``root``."""
    annot = root / "mpii" / "annot"
    annot.mkdir(parents=True)
    for name in ("train.json", "valid.json"):
        shutil.copy(SAMPLES / "mpii" / "test_mpii.json", annot / name)
    shutil.copytree(SAMPLES / "mpii", root / "mpii" / "images", ignore=shutil.ignore_patterns("*.json"))
    return root


def test_other_data_is_another_run(roots, runs_dir, tmp_path, monkeypatch):
    """Issue #18, item 1: the same config on other data (every keypoint moved 15 px) was served the cached run of
    the old data. The data's fingerprint is part of the run's identity, recorded in config.json and provenance."""
    monkeypatch.setenv("HDM_DATA", str(_coco_layout(tmp_path / "data")))
    cfg = preset("smoke", "hdm", dataset="coco", batch_size=4, epochs=1)
    first = train(cfg, **SMOKE)
    _coco_layout(tmp_path / "data", shift_px=15.0)

    def stop(epoch, row):
        raise Interrupt

    with pytest.raises(Interrupt):  # trained, not served from the cache
        train(cfg, on_epoch_end=stop, **SMOKE)
    assert runs.run_dir(cfg) != first.dir and first.done
    assert first.config_dict["identity"]["data"] != runs.run_identity(cfg)["data"]
    assert str(coco_paths(split="val2017").ann_file) in json.dumps(first.provenance["data"])
    with pytest.raises(ValueError, match="person_keypoints_val2017.json: not the data"):  # nor evaluated on them
        evaluate(first, decoder="argmax_shift", progress=False)


def test_the_run_hash_covers_each_datasets_files_not_where_they_are(roots, tmp_path, monkeypatch):
    coco, mpii = preset("smoke", "hdm", dataset="coco"), preset("smoke", "hdm", dataset="mpii")
    monkeypatch.setenv("HDM_DATA", str(_mpii_layout(_coco_layout(tmp_path / "a"))))
    hashes = {runs.run_hash(coco), runs.run_hash(mpii)}
    monkeypatch.setenv("HDM_DATA", str(_mpii_layout(_coco_layout(tmp_path / "b"))))  # the same files elsewhere
    assert {runs.run_hash(coco), runs.run_hash(mpii)} == hashes
    images, mpii_dir = tmp_path / "b" / "coco" / "images", tmp_path / "b" / "mpii"
    changes = [  # each one is other data
        lambda: _coco_layout(tmp_path / "b", shift_px=15.0),  # every keypoint moved 15 px
        lambda: shutil.copy(SAMPLES / "coco" / "000000000785.jpg", images / "train2017" / "extra.jpg"),  # an image more
        lambda: (images / "val2017" / "000000000785.jpg").rename(images / "val2017" / "000000000786.jpg"),  # renamed
        lambda: (mpii_dir / "annot" / "valid.json").write_text(json.dumps(
            json.loads((SAMPLES / "mpii" / "test_mpii.json").read_text())[:4])),  # a person fewer
        lambda: (mpii_dir / "annot" / "gt_valid.mat").write_bytes(b"head boxes"),  # head boxes added
        lambda: (mpii_dir / "images" / "004645041.jpg").write_bytes(b"cut"),  # an image cut
    ]  # fmt: skip
    seen = {runs.run_hash(coco), runs.run_hash(mpii)}
    for change in changes:
        change()
        now = {runs.run_hash(coco), runs.run_hash(mpii)}
        assert len(now - seen) == 1, change  # one of the two datasets is another run
        seen |= now
    assert "data" in runs.run_identity(preset("smoke", "hdm"))  # synthetic data too


def test_a_folder_holding_another_run_is_refused(gaussian_run, runs_dir, capsys):
    """Issue #18, item 3: the seed-0 run copied into the seed-1 run's folder was served as seed 1."""
    seed1 = preset("smoke", "gaussian", seed=1)
    impostor = runs_dir / runs.run_dir(seed1).name
    shutil.copytree(gaussian_run.dir, impostor)
    with pytest.raises(runs.DamagedRunError, match=re.escape(str(impostor))):
        train(seed1, **SMOKE)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--scale", "smoke", "--method", "gaussian", "--seed", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and impostor.name in err and "delete" in err
    assert runs.status(runs.Run(impostor)) == "damaged"


def test_an_edited_evaluation_cache_is_refused(damaged_copy, capsys):
    """Issue #18, item 4: an edited ``eval/<key>.json`` was served as the run's numbers."""
    computed = evaluate(damaged_copy, decoder="local_com", flip_test=False, progress=False)
    path = damaged_copy / runs.EVAL_DIR / "local_com-flip0.json"
    saved = json.loads(path.read_text())
    saved["metrics"]["PCK"] = 0.999
    path.write_text(json.dumps(saved))
    with pytest.raises(runs.DamagedRunError, match=re.escape(str(path)) + ".*refresh"):
        evaluate(damaged_copy, decoder="local_com", flip_test=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--run", str(damaged_copy), "--decoder", "local_com", "--no-flip-test"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and path.name in err
    assert evaluate(damaged_copy, decoder="local_com", flip_test=False, refresh=True, progress=False) == computed


def test_a_done_that_lists_too_few_files_is_refused(damaged_copy):
    """Issue #18, item 4: a ``done`` without checksums (or without final.pt's) served a truncated final.pt."""
    done = damaged_copy / runs.DONE
    manifest = json.loads(done.read_text())
    final = damaged_copy / runs.FINAL
    final.write_bytes(final.read_bytes()[:1000])
    del manifest["files"][runs.FINAL]
    done.write_text(json.dumps(manifest))
    with pytest.raises(runs.DamagedRunError, match=re.escape(runs.FINAL)):
        train(preset("smoke", "gaussian", seed=0), **SMOKE)
    done.write_text(json.dumps({**manifest, "files": {}}))
    with pytest.raises(runs.DamagedRunError, match=re.escape(str(done))):
        train(preset("smoke", "gaussian", seed=0), **SMOKE)


def test_a_run_finished_while_waiting_for_the_lock_is_served(gaussian_run, runs_dir, monkeypatch):
    """Issue #18, item 10: a trainer that got the lock after another process finished the run trained it again."""
    acquire = runs.RunLock.acquire

    def finished_by_another_process(lock):
        shutil.copytree(gaussian_run.dir, lock.path.parent, ignore=shutil.ignore_patterns(runs.LOCK), dirs_exist_ok=True)
        acquire(lock)

    def never(epoch, row):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(runs.RunLock, "acquire", finished_by_another_process)
    run = train(preset("smoke", "gaussian", seed=0), on_epoch_end=never, **SMOKE)
    assert run.dir.parent == runs_dir and run.done
    for name in (runs.FINAL, runs.DONE, runs.PROVENANCE):
        assert (run.dir / name).read_bytes() == (gaussian_run.dir / name).read_bytes(), name
    with runs.RunLock(run.dir):  # released
        pass


def test_an_unwritable_eval_folder_fails_before_computing(damaged_copy, monkeypatch, capsys):
    """Issue #18, item 10: an eval/ that cannot be written computed the evaluation, then lost it."""
    shutil.rmtree(damaged_copy / runs.EVAL_DIR, ignore_errors=True)
    (damaged_copy / runs.EVAL_DIR).write_text("")  # in the way: an OSError even for root, like a read-only disk

    def computed(*args, **kwargs):
        raise AssertionError("evaluated although the result cannot be saved")

    monkeypatch.setattr(engine_evaluation, "validate", computed)
    with pytest.raises(OSError, match=re.escape(str(damaged_copy / runs.EVAL_DIR))):
        evaluate(damaged_copy, decoder="local_com", flip_test=True)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--run", str(damaged_copy), "--decoder", "local_com", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and str(damaged_copy / runs.EVAL_DIR) in err


# ------------------------------------------------------------------------------------------------ issue 19: test split, map shares


def _hand_made_maps():
    """Two images x 3 joints of 4 x 5 maps with known signs; joint (1, 0) is unlabelled. Counted: 5 maps, of which
    3 have no pixel > 0: (0, 0) all negative, (0, 2) all zero, (1, 2) all negative."""
    maps = -torch.ones(2, 3, 4, 5)
    maps[0, 1, 2, 3] = 0.5  # one positive pixel
    maps[0, 2] = 0.0  # zero is not positive
    maps[1, 1] = 0.2
    joints = torch.full((2, 3, 2), 2.0)
    visibility = torch.tensor([[2.0, 2.0, 1.0], [0.0, 2.0, 2.0]])
    return maps, joints, visibility


def test_map_shares_on_hand_made_maps():
    from hdm.engine import diagnostics
    from hdm.loss import has_supply, suppliers
    from hdm.targets import target_weight

    maps, joints, visibility = _hand_made_maps()
    weight = target_weight(joints, visibility, (4, 5))
    assert diagnostics.no_positive(maps, weight).tolist() == [True, False, True, False, True]
    served = diagnostics.guard_served(maps, weight, "relu", "guarded")
    assert served.tolist() == [True, False, True, False, True]
    assert torch.equal(served, ~has_supply(maps, "relu")[weight > 0])  # the loss's own test of supply
    counted = maps[weight > 0]
    guarded = suppliers(counted, 1e-6, "relu").flatten(1)
    softmax = torch.softmax(counted.flatten(1), -1)
    assert torch.allclose(guarded[served], softmax[served])  # what the loss sees there is the guard's softmax
    assert not torch.allclose(guarded[~served], softmax[~served])
    for supplier, guard in (("relu", "strict"), ("softplus", "guarded"), ("softmax", "guarded"), (None, "guarded")):
        assert not diagnostics.guard_served(maps, weight, supplier, guard).any(), (supplier, guard)
    shares = diagnostics.MapShares("relu")
    assert math.isnan(diagnostics.MapShares.shares(shares.totals())["train_no_positive_share"])  # nothing counted
    shares.add(maps, joints, visibility)
    shares.add(torch.ones(2, 3, 4, 5), joints, torch.full((2, 3), 2.0))  # 6 counted maps, all positive
    assert shares.totals() == [11.0, 3.0, 3.0]
    assert diagnostics.MapShares.shares(shares.totals()) == {"train_no_positive_share": 3 / 11,
                                                              "train_guard_share": 3 / 11}  # fmt: skip
    strict = diagnostics.MapShares("relu", "strict")
    strict.add(maps, joints, visibility)
    assert diagnostics.MapShares.shares(strict.totals()) == {"train_no_positive_share": 0.6, "train_guard_share": 0.0}
    assert diagnostics.loss_supplier(preset("smoke", "gaussian")) is None
    assert diagnostics.loss_supplier(preset("smoke", "hdm")) == "relu"
    assert diagnostics.loss_supplier(variant_preset("smoke", "hdm_naive+supplier:softplus")) == "softplus"


def test_every_run_reports_the_map_shares_per_epoch(gaussian_run, roots, runs_dir):
    shares = ["train_no_positive_share", "train_guard_share", "val_no_positive_share"]
    gaussian = gaussian_run.metrics
    assert gaussian[shares].notna().all().all() and ((gaussian[shares] >= 0) & (gaussian[shares] <= 1)).all().all()
    assert (gaussian["train_guard_share"] == 0).all()  # MSE: no suppliers, no guard
    relu = train(preset("smoke", "hdm", seed=0, epochs=1), **SMOKE).metrics
    assert relu[shares].notna().all().all() and ((relu[shares] >= 0) & (relu[shares] <= 1)).all().all()
    assert (relu["train_guard_share"] == relu["train_no_positive_share"]).all()  # relu, guarded: the same maps


def _rewrite_test_split(data_root: Path, move_px: float) -> Path:
    """Move every labelled keypoint of the cached smoke test split under ``data_root`` by ``move_px`` to the right
    (kept inside the image) and rewrite its manifest, so that the cache serves the edited file as it is."""
    from hdm.data import synthetic

    ann = next((data_root / "synthetic").glob("smoke_test_*/annotations/person_keypoints_test.json"))
    data = json.loads(ann.read_text())
    for person in data["annotations"]:
        kps = person["keypoints"]
        for j in range(0, len(kps), 3):
            if kps[j + 2] > 0:
                kps[j] = min(kps[j] + move_px, 255.0)
    ann.write_text(json.dumps(data))
    synthetic.write_manifest(ann.parents[1], ann, ann.parents[1] / "images" / "test")
    return ann


def test_evaluate_on_the_held_out_test_split(damaged_copy, roots, tmp_path, monkeypatch, capsys, caplog):
    from hdm.data import synthetic
    from hdm.data.sources import eval_sources
    from hdm.engine.data import build_eval_data

    run = runs.Run(damaged_copy)
    options = dict(decoder="argmax_shift", flip_test=False, progress=False)
    test = evaluate(run, split="test", **options)
    val = evaluate(run, split="val", **options)
    assert set(test) == set(val) and test["err_px"] != val["err_px"]  # the same metrics, on other persons
    assert engine_evaluation.eval_key("argmax_shift", False, "test") == "argmax_shift-flip0-test"
    assert engine_evaluation.eval_key("argmax_shift", True) == "argmax_shift-flip1"  # val keeps its key
    for name in ("argmax_shift-flip0-test", "argmax_shift-flip0"):
        for suffix in (".json", ".npz", runs.SUMS):
            assert (damaged_copy / runs.EVAL_DIR / f"{name}{suffix}").is_file(), name + suffix
    saved = json.loads((damaged_copy / runs.EVAL_DIR / "argmax_shift-flip0-test.json").read_text())
    test_ann, _ = synthetic.synthetic_split("smoke", "test", 0)
    assert saved["split"] == "test" and saved["data"]["test_annotations"]["path"] == str(test_ann)
    arrays = engine_evaluation.evaluation_arrays(run, "argmax_shift", False, split="test")
    persons = json.loads(test_ann.read_text())["annotations"]
    assert len(arrays["index"]) == len(persons) == len(build_eval_data(run.config, "test").val)
    assert set(arrays["annotation_id"].tolist()) == {p["id"] for p in persons}

    calls = []

    def counted_validate(*args, **kwargs):
        calls.append(1)
        return validate(*args, **kwargs)

    validate = engine_evaluation.validate
    monkeypatch.setattr(engine_evaluation, "validate", counted_validate)
    assert evaluate(run, split="test", **options) == test and not calls  # served from the cache

    # other test files under HDM_DATA (every keypoint moved 3 px): evaluated anew, never served the old result
    copy = tmp_path / "data"
    shutil.copytree(roots / "data", copy)
    monkeypatch.setenv("HDM_DATA", str(copy))
    _rewrite_test_split(copy, 3.0)
    moved = evaluate(run, split="test", **options)
    assert calls == [1] and moved["err_px"] != test["err_px"] and "evaluating anew" in caplog.text
    assert evaluate(run, split="test", **options) == moved and calls == [1]
    monkeypatch.setenv("HDM_DATA", str(roots / "data"))  # back to the original files: anew again
    assert evaluate(run, split="test", **options) == test and calls == [1, 1]

    assert cli.main(["evaluate", "--run", str(damaged_copy), "--decoder", "argmax_shift", "--no-flip-test",
                     "--split", "test", "--no-progress"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out) == test and calls == [1, 1]
    for dataset in ("coco", "mpii"):  # no held-out test split: one line, before any file is looked for
        cfg = preset("smoke", "hdm", dataset=dataset)
        for call in (lambda: eval_sources(cfg, "test"), lambda: build_eval_data(cfg, "test")):
            with pytest.raises(ValueError, match=f"split 'test' is unavailable for {dataset}: only synthetic") as info:
                call()
            assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown evaluation split 'train'"):
        evaluate(run, split="train")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--run", str(damaged_copy), "--split", "train"])
    assert exit_info.value.code == 2
