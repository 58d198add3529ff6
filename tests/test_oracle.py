"""hdm.oracle: the evaluation path run on ground-truth heatmaps, on the real COCO sample (tests/data/coco) and on
a small synthetic split generated here.

References are independent of the code under test: closed-form 1-D centres of mass, the rounding of joints
to pixels, the crop's affine matrix (``hdm.geometry.crop_matrix``) and pycocotools' own matching."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hdm.data import EmptyDatasetError
from hdm.data.coco import CocoTopDown
from hdm.data.synthetic import generate
from hdm.decode import decode
from hdm.geometry import apply_affine, crop_matrix
from hdm.oracle import (
    KINDS,
    METRICS,
    WIDE_WINDOW,
    oracle_evaluate,
    oracle_heatmaps,
    oracle_predictions,
    oracle_table,
    run_oracle,
    write_oracle_table,
)
from hdm.targets import gaussian_heatmaps

COCO_IMAGES = Path(__file__).parent / "data" / "coco"
COCO_JSON, COCO_DETS = COCO_IMAGES / "test_coco.json", COCO_IMAGES / "test_coco_det_AP_H_56.json"
DECODERS = ("argmax_shift", "local_com")
LARGE, SMALL = ((256, 192), (64, 48)), ((128, 96), (32, 24))  # (input, heatmap) sizes, (H, W) px


@pytest.fixture(scope="module")
def coco():
    return CocoTopDown(COCO_JSON, COCO_IMAGES, *LARGE)


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), "val", num_images=12, seed=0)


@pytest.fixture(scope="module", params=["coco", "synthetic"])
def dataset(request, coco, synthetic_files):
    """The COCO sample at 48x64 heatmaps and the synthetic split at 24x32 (the default-scale model's size)."""
    return coco if request.param == "coco" else CocoTopDown(*synthetic_files, *SMALL)


def com_1d(u: np.ndarray, size: int, radius: int, sigma: float) -> np.ndarray:
    """Centre of mass of the sampled Gaussian exp(-(i - u)²/2σ²) over the pixels i of the window of
    ``radius`` around round(u), clipped to [0, size - 1]."""
    out = np.empty_like(u)
    for n, x in enumerate(u):
        p = math.floor(x + 0.5)
        i = np.arange(max(0, p - radius), min(size - 1, p + radius) + 1, dtype=np.float64)
        g = np.exp(-((i - x) ** 2) / (2 * sigma**2))
        out[n] = (i * g).sum() / g.sum()
    return out


def image_px(pred, coords: np.ndarray) -> np.ndarray:
    """Heatmap px -> image px through each crop's inverse affine matrix (independent of heatmap_to_image)."""
    return np.stack(
        [apply_affine(c, crop_matrix(ce, sc, 0.0, pred.heatmap_hw, inverse=True))
         for c, ce, sc in zip(coords, pred.center, pred.scale)]
    )  # fmt: skip


def rounding_bound_image_px(pred) -> np.ndarray:
    """(N, 1) image px: half a heatmap pixel on each axis, |(0.5, 0.5)| mapped to the image."""
    height, width = pred.heatmap_hw
    return 0.5 * np.hypot(200 * pred.scale[:, 0] / width, 200 * pred.scale[:, 1] / height)[:, None]


# ---------------------------------------------------------------- the ceiling


def test_subpixel_gaussian_with_wide_local_com_reaches_ap_1_on_the_coco_sample(coco):
    result = oracle_evaluate(coco, "subpixel_gaussian", "local_com", window=WIDE_WINDOW)
    for name in METRICS:
        assert result[name] == pytest.approx(1.0, abs=1e-9), name
    # Measured 0.038 px; the largest errors sit at joints whose Gaussian the heatmap border cuts.
    assert result["error_image_px"] < 0.05
    assert result["persons"] == 12 and result["joints"] == 181 and result["joints_outside"] == 0

    pred = oracle_predictions(coco, "subpixel_gaussian", "local_com", window=WIDE_WINDOW)
    vis = pred.visibility
    radius = WIDE_WINDOW // 2
    for axis, size in enumerate(pred.heatmap_hw[::-1]):  # x: width, y: height
        expected = com_1d(pred.joints[..., axis][vis], size, radius, sigma=2.0)
        assert np.allclose(pred.coords[..., axis][vis], expected, atol=1e-9, rtol=0)
    assert np.allclose(pred.image_coords, image_px(pred, pred.coords), atol=1e-9, rtol=0)


def test_synthetic_split_subpixel_oracles_reach_ap_1(synthetic_files):
    small = CocoTopDown(*synthetic_files, *SMALL)
    exact = oracle_evaluate(small, "subpixel_dot", "local_com")  # bilinear splat: its centre of mass is the joint
    assert all(exact[m] == pytest.approx(1.0, abs=1e-9) for m in ("AP", "AP50", "AP75", "AR"))
    assert exact["error_heatmap_px"] < 1e-9 and exact["error_image_px"] < 1e-3  # float32 storage of the samples
    large = CocoTopDown(*synthetic_files, *LARGE)
    smooth = oracle_evaluate(large, "subpixel_gaussian", "local_com", window=WIDE_WINDOW)
    assert all(smooth[m] == pytest.approx(1.0, abs=1e-9) for m in ("AP", "AP50", "AP75", "AR"))
    assert smooth["error_image_px"] < 0.05


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("decoder", DECODERS)
def test_every_kind_and_decoder_scores_in_the_unit_interval(dataset, kind, decoder):
    result = oracle_evaluate(dataset, kind, decoder)
    assert 0 < result["AP"] <= 1 + 1e-12 and 0 < result["AR"] <= 1 + 1e-12
    assert result["joints"] > 0 and 0 <= result["error_heatmap_px"] <= result["max_error_heatmap_px"]


# ---------------------------------------------------------------- quantisation bounds


@pytest.mark.parametrize("kind", ["dot", "gaussian"])
def test_rounded_oracles_decode_to_the_rounded_pixel(dataset, kind):
    """A dot (or HRNet's Gaussian, centred on the rounded pixel) has equal neighbours, so the quarter shift does
    not fire: argmax_shift returns round(joint), error |f| <= 0.5 per axis, |e| <= sqrt(2)/2 heatmap px."""
    pred = oracle_predictions(dataset, kind, "argmax_shift")
    vis = pred.visibility
    rounded = np.floor(pred.joints + 0.5)
    assert np.array_equal(pred.coords[vis], rounded[vis])
    err = np.linalg.norm(pred.coords - pred.joints, axis=-1)[vis]
    assert err.max() <= math.sqrt(2) / 2 + 1e-12
    # Sub-pixel offsets spread evenly: the mean is close to E|f| for f uniform on the unit square, 0.383.
    assert err.mean() == pytest.approx((math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6, abs=0.04)
    err_image = np.linalg.norm(pred.image_coords - pred.image_joints, axis=-1)
    bound = np.broadcast_to(rounding_bound_image_px(pred), err_image.shape)
    assert np.all(err_image[vis] <= bound[vis] + 1e-3)  # 1e-3: float32 storage of the samples


@pytest.mark.parametrize("kind", ["subpixel_gaussian", "subpixel_dot"])
def test_argmax_shift_on_subpixel_maps_moves_a_quarter_toward_the_joint(dataset, kind):
    """On a map that peaks at round(u) and is higher on the joint's side, HRNet's decoder gives
    round(u) + sign(u - round(u))/4 where the peak is interior (2 <= p <= size - 2): error <= 0.25 per axis."""
    pred = oracle_predictions(dataset, kind, "argmax_shift")
    vis = pred.visibility
    rounded = np.floor(pred.joints + 0.5)
    size = np.asarray(pred.heatmap_hw[::-1])  # (w, h) against (x, y)
    interior = np.all((rounded >= 2) & (rounded <= size - 2), axis=-1, keepdims=True)
    expected = rounded + 0.25 * np.sign(pred.joints - rounded) * interior
    assert np.allclose(pred.coords[vis], expected[vis], atol=1e-12, rtol=0)
    inner = vis & interior[..., 0]
    assert inner.sum() > 0.9 * vis.sum()
    assert np.abs(pred.coords - pred.joints)[inner].max() <= 0.25 + 1e-12


def test_subpixel_maps_have_their_centre_of_mass_at_the_joint():
    torch.manual_seed(0)
    joints = torch.rand(3, 5, 2, dtype=torch.float64) * 20 + 22  # well inside a 64 x 64 map
    vis = torch.ones(3, 5)
    xs = torch.arange(64, dtype=torch.float64)
    for kind, tol in (("subpixel_gaussian", 1e-9), ("subpixel_dot", 1e-12)):
        maps = oracle_heatmaps(joints, vis, (64, 64), kind)
        mass = maps.sum(dim=(-2, -1))
        com = torch.stack(((maps.sum(-2) * xs).sum(-1) / mass, (maps.sum(-1) * xs).sum(-1) / mass), dim=-1)
        assert torch.allclose(com, joints, atol=tol, rtol=0), kind
    assert torch.allclose(oracle_heatmaps(joints, vis, (64, 64), "subpixel_dot").sum(dim=(-2, -1)), vis.double())
    assert torch.equal(oracle_heatmaps(joints, vis, (64, 64), "gaussian"), gaussian_heatmaps(joints, vis, (64, 64))[0])


# ---------------------------------------------------------------- joints and persons without labels


def test_invisible_joints_give_zero_maps_and_decode_without_error():
    joints = torch.tensor([[[5.3, 7.8], [-3.0, 2.0], [40.0, 2.0], [0.0, 0.0]]], dtype=torch.float64)
    vis = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # joints 1, 2 fall outside a 16 x 32 map, joint 3 is unlabelled
    for kind in KINDS:
        maps = oracle_heatmaps(joints, vis, (16, 32), kind)
        assert maps.shape == (1, 4, 16, 32) and maps[0, 0].max() > 0, kind
        assert torch.all(maps[0, 1:] == 0), kind
        for decoder in DECODERS:
            coords, maxvals = decode(maps, decoder)
            assert torch.isfinite(coords).all() and torch.all(maxvals[0, 1:] == 0)


def test_unlabelled_joints_and_persons_do_not_count(coco):
    pred = oracle_predictions(coco, "dot", "argmax_shift")
    assert (~pred.labelled).any(axis=1).sum() >= 5  # persons with unlabelled joints are predicted ...
    assert np.all(pred.coords[~pred.visibility] == 0)  # ... and those joints land on the map's corner,
    assert oracle_evaluate(coco, "subpixel_dot", "local_com")["AP"] == pytest.approx(1.0, abs=1e-9)  # unscored
    # Persons without any labelled joint (2 of 14) get no pose by default; a pose decoded from their all-zero
    # maps (as a model run on every box would give) matches no ground truth and costs AP.
    with_all = oracle_evaluate(coco, "subpixel_dot", "local_com", predict_unlabelled=True)
    assert with_all["persons"] == len(coco) == 14 and with_all["AP"] < 1 - 1e-3


def test_datasets_the_oracle_cannot_use(tmp_path, coco):
    raw = json.loads(COCO_JSON.read_text())
    raw["annotations"] = [a for a in raw["annotations"] if a["num_keypoints"] == 0]
    (tmp_path / "unlabelled.json").write_text(json.dumps(raw))
    unlabelled = CocoTopDown(tmp_path / "unlabelled.json", COCO_IMAGES)
    with pytest.raises(EmptyDatasetError, match="nothing to predict"):
        oracle_evaluate(unlabelled)
    with pytest.raises(ValueError, match="ground-truth boxes"):
        oracle_evaluate(CocoTopDown(COCO_JSON, COCO_IMAGES, boxes=COCO_DETS))
    with pytest.raises(ValueError, match="validation"):
        oracle_evaluate(CocoTopDown(COCO_JSON, COCO_IMAGES, train=True))
    with pytest.raises(ValueError, match="unknown oracle kind"):
        oracle_evaluate(coco, kind="blob")
    with pytest.raises(ValueError, match="unknown decoder"):
        oracle_evaluate(coco, decoder="soft_argmax")
    with pytest.raises(ValueError, match="window"):
        oracle_evaluate(coco, decoder="argmax_shift", window=7)


# ---------------------------------------------------------------- table


def test_oracle_table_and_its_files(coco, tmp_path):
    df = oracle_table({"coco": coco}, kinds=("dot",), decoders=("argmax_shift", ("local_com", 13)))
    assert list(df["decoder"]) == ["argmax_shift", "local_com"] and np.isnan(df["window"][0]) and df["window"][1] == 13
    assert set(df["heatmap"]) == {"48x64"}
    single = oracle_evaluate(coco, "dot", "local_com", window=13)
    assert df["AP"][1] == pytest.approx(100 * single["AP"]) and df["error_image_px"][1] == single["error_image_px"]
    csv_path, md_path = write_oracle_table(df, "oracle_test", folder=tmp_path, caption="Oracle, AP in %.")
    assert csv_path == tmp_path / "oracle_test.csv"
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), df, check_dtype=False)
    lines = md_path.read_text().splitlines()
    assert lines[0] == "Oracle, AP in %."
    assert lines[2].startswith("| dataset | heatmap | kind | decoder | window | AP |")
    assert len(lines) == 2 + 2 + len(df)
    with pytest.raises(ValueError, match="decoder"):
        oracle_table({"coco": coco}, decoders=(("argmax_shift", 3),))


def test_run_oracle_on_the_smoke_scale(tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_DATA", str(tmp_path))  # the smoke split is generated there, not in the repository
    df = run_oracle("smoke", write=False)
    assert len(df) == 2 * 2 * len(KINDS) * 3  # datasets x resolutions x kinds x decoder settings
    assert set(df["dataset"]) == {"coco_sample", "synthetic_smoke_val"} and set(df["heatmap"]) == {"48x64", "24x32"}
    exact = df[(df["kind"] == "subpixel_dot") & (df["decoder"] == "local_com")]
    assert np.allclose(exact["AP"], 100.0)
    with pytest.raises(ValueError, match="unknown scale"):
        run_oracle("huge", write=False)
