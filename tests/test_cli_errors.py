"""User errors on the command line (``hdm`` and ``python -m hdm.reproduce``): one line, ``hdm <command>: error:``,
exit status 2, naming what was expected, what came and the fix; nothing trained or run first.

Each test reproduces a defect of issue #18 (the comment says how it failed then). No test trains more than a few
steps on three persons, and none runs a notebook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hdm import cli, reproduce

FIXTURES = Path(__file__).parent / "data" / "keypoint_sets"
ANIMAL = json.loads((FIXTURES / "animal.json").read_text())  # a made-up 9-joint set without OKS sigmas


def one_line_error(capsys, main, args, command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, (exit_info.value.code, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"hdm {command}: error: "), err
    return err


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HDM_RUNS", str(tmp_path / "runs"))
    return tmp_path


# ---------------------------------------------------------------- hdm evaluate / pretrain: the device


def test_evaluate_checks_the_device_like_train(capsys, monkeypatch, roots):
    # was: torch's RuntimeError "Expected one of cpu, cuda, ... device type at start of device string: gpu",
    # a traceback with exit 1 (train refused the same value in one line)
    import hdm.engine
    from hdm.engine.evaluation import resolve_device

    monkeypatch.setattr(hdm.engine, "evaluate", lambda run, *args, device, **kwargs: resolve_device(device))
    err = one_line_error(capsys, cli.main, ["evaluate", "--run", "some-run", "--device", "gpu"], "evaluate")
    assert "device must be auto, cpu, cuda or cuda:N, got 'gpu'" in err
    train_err = one_line_error(capsys, cli.main, ["config", "--scale", "smoke", "--method", "hdm", "--set",
                                                  "device=gpu"], "config")  # fmt: skip
    assert "device must be auto, cpu, cuda or cuda:N, got 'gpu'" in train_err
    err = one_line_error(capsys, cli.main, ["pretrain", "--set", "device=gpu"], "pretrain")
    assert "device must be auto, cpu, cuda or cuda:N, got 'gpu'" in err


# ---------------------------------------------------------------- --set input_hw


def test_input_size_off_the_stride_says_so(capsys):
    # was: "input_hw (130, 98) needs heatmap_hw (32, 24), got (32, 24)": the two sizes named agree
    err = one_line_error(capsys, cli.main, ["config", "--scale", "smoke", "--method", "hdm", "--set",
                                            "input_hw=130,98"], "config")  # fmt: skip
    assert "input_hw must be multiples of 4" in err and "got (130, 98)" in err and "(128, 96)" in err
    assert "got (32, 24)" not in err
    err = one_line_error(capsys, cli.main, ["config", "--scale", "smoke", "--method", "hdm", "--set",
                                            "input_hw=256,192"], "config")  # fmt: skip
    assert "heatmap_hw must be input_hw / 4 = (64, 48)" in err and "got (32, 24)" in err
    assert "--set heatmap_hw=64,48" in err


# ---------------------------------------------------------------- a custom keypoint set without sigmas


def _custom_coco_layout(root: Path) -> None:
    """The animal fixture as both COCO splits under ``root`` (HDM_DATA)."""
    for split in ("train2017", "val2017"):
        images = root / "coco" / "images" / split
        images.mkdir(parents=True)
        for image in ANIMAL["images"]:
            shutil.copy(FIXTURES / image["file_name"], images / image["file_name"])
        annotations = root / "coco" / "annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        (annotations / f"person_keypoints_{split}.json").write_text(json.dumps(ANIMAL))


def test_custom_keypoints_without_sigmas_fail_before_training(capsys, roots):
    # was: trained a whole epoch, then "joint set 'custom' ... has no OKS sigmas ... CocoTopDown(..., sigmas=[...])":
    # the Python API suggested to a command-line user
    _custom_coco_layout(roots / "data")
    args = ["train", "--scale", "smoke", "--method", "gaussian", "--dataset", "coco", "--no-progress",
            "--set", "batch_size=2", "--set", "epochs=1"]  # fmt: skip
    err = one_line_error(capsys, cli.main, args, "train")
    assert "no OKS sigmas" in err and "--set sigmas=" in err and "--set sigmas=0.0669,0.0669," in err
    assert not (roots / "runs").exists() or not any((roots / "runs").rglob("*.pt"))  # nothing trained
    sigmas = ",".join(str(s) for s in ANIMAL["info"]["sigmas"])
    assert cli.main(args + ["--set", f"sigmas={sigmas}"]) == 0  # --set sigmas= reaches the datasets
    out = capsys.readouterr().out
    assert "AP" in out
    err = one_line_error(capsys, cli.main, args + ["--set", "sigmas=0.05,0.05"], "train")
    assert "sigmas must be 9 positive numbers" in err


# ---------------------------------------------------------------- python -m hdm.reproduce --param


@pytest.fixture
def no_notebooks(monkeypatch):
    """Running a notebook fails the test: every error here must come before any notebook runs."""

    def run_notebook(name, *args, **kwargs):
        raise AssertionError(f"notebook {name} ran")

    monkeypatch.setattr(reproduce, "run_notebook", run_notebook)


@pytest.mark.parametrize(
    "param, expected",
    [
        ("seeds=notalist", "notebook parameter seeds='notalist': expected a non-empty list of integers"),
        ("seedz=[0]", "--param seedz: declared by none of the notebooks run"),
        ("seeds=[0, 1", "--param seeds: VALUE must be YAML"),
        ("scale=paper", "set the scale with --scale"),
        ("seeds", "--param expects KEY=VALUE"),
    ],
)
def test_bad_reproduce_params_are_one_line_with_exit_2(capsys, no_notebooks, param, expected):
    # was: seeds=notalist ran the notebook, which failed: a 1,218-character flattened traceback, exit 1;
    # unknown keys and bad YAML: exit 1 without the "hdm reproduce: error:" prefix (bad YAML on several lines)
    for main in (reproduce.main, lambda argv: cli.main(["reproduce", *argv])):
        err = one_line_error(capsys, main, ["--scale", "smoke", "--only", "fig2", "--param", param], "reproduce")
        assert expected in err, err


def test_the_engine_checks_the_device_for_python_callers_too():
    # was: evaluate(run, device="gpu") from Python raised torch's bare RuntimeError
    from hdm.engine.evaluation import resolve_device

    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    assert resolve_device("cpu").type == "cpu"
