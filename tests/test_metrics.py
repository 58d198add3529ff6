"""Pose metrics (hdm.metrics): COCO AP through pycocotools on real annotations, OKS against pycocotools,
HRNet's rescoring and OKS-NMS, and PCKh / PCK / errors on hand-made cases whose answers are worked out here."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hdm.metrics import (
    COCO_METRIC_NAMES,
    COCO_SIGMAS,
    MPII_JOINTS,
    coco_keypoint_eval,
    localisation_error,
    make_coco_results,
    mpii_head_size,
    oks,
    oks_nms,
    pck_bbox,
    pckh,
    rescore,
)

COCO_JSON = Path(__file__).parent / "data" / "coco" / "test_coco.json"


@pytest.fixture(scope="module")
def coco_gt() -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(COCO_JSON))


def labelled_annotations(gt: COCO) -> list[dict]:
    return [a for a in gt.loadAnns(gt.getAnnIds()) if a["num_keypoints"] > 0 and not a["iscrowd"]]


def gt_as_results(gt: COCO, noise_px: float = 0.0, seed: int = 0) -> list[dict]:
    """Every labelled GT pose as a result, keypoints moved by ``noise_px`` times a fixed random direction."""
    rng = np.random.default_rng(seed)
    results = []
    for i, ann in enumerate(labelled_annotations(gt)):
        kpts = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        kpts[:, :2] += noise_px * rng.standard_normal((len(kpts), 2))
        score = 1.0 - 0.01 * i
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kpts.ravel().tolist(), "score": score})
    return results


# ---------------------------------------------------------------------------------------------------------
# COCO AP


def test_gt_keypoints_as_results_give_perfect_scores(coco_gt):
    results = gt_as_results(coco_gt)
    stats = coco_keypoint_eval(coco_gt, results)
    assert set(stats) == set(COCO_METRIC_NAMES)
    for name in COCO_METRIC_NAMES:
        assert stats[name] == pytest.approx(1.0), name
    assert coco_keypoint_eval(COCO_JSON, results) == stats  # a path works too


def test_perturbed_keypoints_lower_ap(coco_gt):
    small = coco_keypoint_eval(coco_gt, gt_as_results(coco_gt, noise_px=3.0))
    large = coco_keypoint_eval(coco_gt, gt_as_results(coco_gt, noise_px=15.0))
    # same noise directions, larger steps: every OKS shrinks, so AP cannot rise
    assert 0.0 <= large["AP"] < small["AP"] < 1.0
    assert large["AR"] < small["AR"] < 1.0
    assert all(0.0 <= v <= 1.0 for v in small.values())


def test_coco_eval_leaves_results_untouched_and_restricts_images(coco_gt):
    results = [r for r in gt_as_results(coco_gt) if r["image_id"] == 785]
    before = copy.deepcopy(results)
    full = coco_keypoint_eval(coco_gt, results)
    only_785 = coco_keypoint_eval(coco_gt, results, image_ids=[785])
    assert results == before
    assert only_785["AP"] == pytest.approx(1.0)
    assert full["AR"] < 0.2  # one person found out of all labelled ones


def test_coco_eval_errors(coco_gt):
    with pytest.raises(ValueError, match="empty"):
        coco_keypoint_eval(coco_gt, [])
    bad = gt_as_results(coco_gt)[:1]
    bad[0]["image_id"] = 123456789
    with pytest.raises(ValueError, match="123456789"):
        coco_keypoint_eval(coco_gt, bad)
    with pytest.raises(ValueError, match="lacks"):
        coco_keypoint_eval(coco_gt, [{"image_id": 785, "keypoints": [0.0] * 51}])


# ---------------------------------------------------------------------------------------------------------
# OKS


def test_oks_matches_pycocotools_compute_oks(coco_gt):
    results = gt_as_results(coco_gt, noise_px=6.0, seed=1)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "keypoints")
        evaluator.evaluate()
    checked = 0
    for image_id in coco_gt.getImgIds():
        ious = np.asarray(evaluator.ious[(image_id, 1)])
        dts = sorted([r for r in results if r["image_id"] == image_id], key=lambda r: -r["score"])
        gts = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=image_id))
        for j, g in enumerate(gts):
            gk = np.array(g["keypoints"], dtype=np.float64).reshape(-1, 3)
            if not (gk[:, 2] > 0).any():
                continue  # pycocotools uses a box-distance rule for unlabelled GT (ignored in evaluation)
            for i, d in enumerate(dts):
                dk = np.array(d["keypoints"]).reshape(-1, 3)
                ours = oks(dk[:, :2], gk[:, :2], g["area"], visible=gk[:, 2] > 0)
                assert ours == pytest.approx(ious[i, j], abs=1e-12)
                checked += 1
    assert checked > 20


def test_oks_closed_forms():
    gt = np.zeros((17, 2))
    assert oks(gt, gt, 100.0) == pytest.approx(1.0)
    # one joint counted, off by d: exp(-d² / (2 · area · (2σ)²))
    pred = gt.copy()
    pred[0] = [3.0, 4.0]
    visible = np.zeros(17, bool)
    visible[0] = True
    expected = np.exp(-25.0 / (2 * 400.0 * (2 * COCO_SIGMAS[0]) ** 2))
    assert oks(pred, gt, 400.0, visible=visible) == pytest.approx(expected)
    assert oks(pred, gt, 400.0, visible=np.zeros(17, bool)) == 0.0
    # broadcasting: (2, 1, K, 2) vs (1, 3, K, 2) -> (2, 3)
    assert oks(np.zeros((2, 1, 17, 2)), np.zeros((1, 3, 17, 2)), np.ones((2, 3))).shape == (2, 3)


# ---------------------------------------------------------------------------------------------------------
# rescoring, NMS, results


def test_rescore_is_box_score_times_mean_of_confident_joints():
    maxvals = np.array([[0.9, 0.1, 0.5, 0.2], [0.1, 0.2, 0.0, 0.15], [0.3, 0.3, 0.3, 0.3]])
    scores = rescore(np.array([0.8, 0.9, 0.5]), maxvals)
    # joint 4 of pose 0 sits on the threshold and does not count (strict >); pose 1 has none above -> 0
    assert scores == pytest.approx([0.8 * (0.9 + 0.5) / 2, 0.0, 0.5 * 0.3])
    assert rescore(torch.tensor([1.0]), torch.tensor([[0.5, 0.1]]), threshold=0.05) == pytest.approx([0.3])


def _pose(offset_x: float, offset_y: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(42)
    return rng.uniform(0, 100, (17, 2)) + [offset_x, offset_y]


def test_oks_nms_removes_a_duplicate_and_keeps_distinct_people():
    a, a_dup, b = _pose(0.0), _pose(0.5, -0.3), _pose(300.0)
    poses = [
        {"keypoints": a_dup, "score": 0.8, "area": 10000.0},
        {"keypoints": b, "score": 0.7, "area": 10000.0},
        {"keypoints": np.concatenate([a, np.ones((17, 1))], 1).ravel().tolist(), "score": 0.9, "area": 10000.0},
    ]
    assert oks_nms(poses) == [2, 1]
    assert oks_nms(poses, threshold=1.0) == [2, 0, 1]  # OKS never exceeds 1: nothing is dropped
    assert oks_nms([]) == []


def test_make_coco_results_rescoring_and_nms():
    coords = np.stack([_pose(0.0), _pose(0.4), _pose(250.0), _pose(0.0)])  # 2 duplicates, 1 distinct, 1 alone
    maxvals = np.full((4, 17), 0.6)
    maxvals[1] = 0.5
    maxvals[3] = 0.1  # nothing above 0.2: rescored to 0
    args = dict(image_ids=[7, 7, 7, 9], box_scores=[1.0, 1.0, 0.5, 0.9], areas=[9000.0] * 4)

    results = make_coco_results(coords, maxvals, use_nms=True, rescoring=True, **args)
    json.dumps(results)  # plain python numbers
    assert [(r["image_id"], r["score"]) for r in results] == [(7, pytest.approx(0.6)), (7, pytest.approx(0.3)), (9, 0.0)]
    first = np.array(results[0]["keypoints"]).reshape(17, 3)
    assert np.allclose(first[:, :2], coords[0]) and np.allclose(first[:, 2], 0.6)
    assert all(r["category_id"] == 1 and set(r) == {"image_id", "category_id", "keypoints", "score"} for r in results)

    no_nms = make_coco_results(coords, maxvals, use_nms=False, rescoring=False, **args)
    assert [r["score"] for r in no_nms] == [1.0, 1.0, 0.5, 0.9]
    with pytest.raises(ValueError, match="areas"):
        make_coco_results(coords, maxvals, [7, 7, 7, 9], [1.0] * 4, [1.0] * 3)


def test_make_coco_results_end_to_end_on_real_annotations(coco_gt):
    anns = labelled_annotations(coco_gt)
    gt_xy = np.stack([np.array(a["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2] for a in anns])
    duplicates = gt_xy + 0.5  # a second, less confident detection of every person
    coords = np.concatenate([gt_xy, duplicates])
    maxvals = np.concatenate([np.full(gt_xy.shape[:2], 0.9), np.full(gt_xy.shape[:2], 0.4)])
    image_ids = [a["image_id"] for a in anns] * 2
    areas = [a["area"] for a in anns] * 2
    results = make_coco_results(coords, maxvals, image_ids, np.ones(len(coords)), areas, use_nms=True, rescoring=True)
    assert len(results) == len(anns)
    assert all(r["score"] == pytest.approx(0.9) for r in results)
    assert coco_keypoint_eval(coco_gt, results)["AP"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------
# PCKh, PCK, errors

J = {name: k for k, name in enumerate(MPII_JOINTS)}


def _mpii_case():
    """Two people, head sizes 10 and 20 px (PCKh@0.5 radius 5 and 10 px); errors along x."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, (2, 16, 2))
    error = np.zeros((2, 16))
    visible = np.ones((2, 16), bool)
    error[0, J["r_ankle"]] = 6.0  # wrong
    error[0, J["l_ankle"]] = 5.0  # right on the radius: correct (<=)
    error[0, J["head_top"]] = 5.01  # wrong
    error[0, J["r_wrist"]] = 3.0  # correct
    error[0, J["pelvis"]] = 100.0  # wrong, but pelvis is not in the mean
    visible[0, J["thorax"]] = False
    visible[1, J["r_ankle"]] = False
    error[1, J["l_ankle"]] = 15.0  # wrong
    error[1, J["head_top"]] = 9.0  # correct
    error[1, J["l_wrist"]] = 11.0  # wrong
    error[1, J["r_wrist"]] = 10.0  # on the radius: correct
    error[1, J["thorax"]] = 50.0  # wrong, not in the mean
    pred = gt.copy()
    pred[..., 0] += error
    return pred, gt, visible, np.array([10.0, 20.0])


def test_pckh_on_a_hand_made_case():
    table = pckh(*_mpii_case())
    assert list(table.index) == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean"]
    expected = {
        "Head": 1 / 2,  # head top: person 0 wrong, person 1 correct
        "Shoulder": 1.0,
        "Elbow": 1.0,
        "Wrist": (2 / 2 + 1 / 2) / 2,  # r_wrist 2/2, l_wrist 1/2
        "Hip": 1.0,
        "Knee": 1.0,
        "Ankle": (0 / 1 + 1 / 2) / 2,  # r_ankle 0/1 (person 1 not visible), l_ankle 1/2
        # 14 joints without pelvis/thorax: 27 visible (r_ankle once, the rest twice), 23 correct
        # (misses: r_ankle, l_ankle, head_top, l_wrist once each)
        "Mean": 23 / 27,
    }
    for group, value in expected.items():
        assert table.loc[group, "pckh"] == pytest.approx(value), group
    assert table.loc["Ankle", "count"] == 3 and table.loc["Mean", "count"] == 27


def test_pckh_follows_joint_names_and_accepts_tensors():
    pred, gt, visible, head = _mpii_case()
    order = np.arange(16)[::-1]
    reordered = pckh(torch.tensor(pred[:, order]), torch.tensor(gt[:, order]), torch.tensor(visible[:, order]),
                     torch.tensor(head), joint_names=[MPII_JOINTS[k] for k in order])  # fmt: skip
    assert reordered.equals(pckh(pred, gt, visible, head))
    assert pckh(pred, gt, visible, head, threshold=10.0).loc["Mean", "pckh"] == 1.0
    with pytest.raises(ValueError, match="joint_names"):
        pckh(pred, gt, visible, head, joint_names=MPII_JOINTS[:15] + ("nose",))
    with pytest.raises(ValueError, match="> 0"):
        pckh(pred, gt, visible, np.array([10.0, 0.0]))


def test_mpii_head_size_is_point_six_of_the_diagonal():
    assert mpii_head_size(np.array([[10.0, 20.0, 40.0, 60.0]])) == pytest.approx([0.6 * 50.0])


def test_pck_bbox_on_a_hand_made_case():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, :, 0] = [10.0, 11.0, 99.0]  # box 100, threshold 0.1 -> radius 10: correct, wrong, (not visible)
    pred[1, :, 1] = [5.0, 2.0, 6.0]  # box 50 -> radius 5: correct, correct, wrong
    visible = np.array([[True, True, False], [True, True, True]])
    result = pck_bbox(pred, gt, visible, np.array([100.0, 50.0]))
    assert result.mean == pytest.approx(3 / 5)
    assert np.allclose(result.per_joint, [1.0, 0.5, 0.0]) and result.counts.tolist() == [2, 2, 1]
    none_visible = pck_bbox(pred, gt, np.zeros((2, 3), bool), np.array([100.0, 50.0]))
    assert np.isnan(none_visible.mean) and np.isnan(none_visible.per_joint).all()


def test_localisation_error():
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[3.0, 4.0], [0.0, -2.0], [1.0, 1.0]]])
    err = localisation_error(pred, gt, np.array([[True, True, False]]))
    assert err[0, :2].tolist() == [5.0, 2.0] and np.isnan(err[0, 2])
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        localisation_error(pred[0], gt[0], np.ones((3,), bool))
