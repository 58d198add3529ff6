"""hdm.geometry: boxes, crop affines and their exact inverses, checked against HRNet's three-point construction
(via cv2.getAffineTransform), cv2's rotation and warping conventions, and round trips on real COCO/MPII joints."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hdm.geometry import (
    apply_affine,
    box_to_center_scale,
    crop_matrix,
    crop_to_image,
    heatmap_hflip,
    heatmap_to_image,
    hflip_matrix,
    image_to_crop,
    image_to_heatmap,
)

DATA = Path(__file__).parent / "data"
INPUT, HEATMAP = (256, 192), (64, 48)  # (H, W)


def hrnet_three_point_matrix(center, scale, rotation, output_hw):
    """Independent reference: HRNet's get_affine_transform idea, rebuilt from three point correspondences."""
    src_w, dst_h, dst_w = scale[0] * 200.0, output_hw[0], output_hw[1]
    a = math.radians(rotation)
    v = np.array([0.0, -0.5 * src_w])
    src_dir = np.array([v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)])
    src0, dst0 = np.asarray(center, float), np.array([dst_w * 0.5, dst_h * 0.5])
    src1, dst1 = src0 + src_dir, dst0 + np.array([0.0, -0.5 * dst_w])

    def third(p, q):  # q + (p - q) turned by 90 degrees
        d = p - q
        return q + np.array([-d[1], d[0]])

    src = np.float32([src0, src1, third(src0, src1)])
    dst = np.float32([dst0, dst1, third(dst0, dst1)])
    return cv2.getAffineTransform(src, dst)


def coco_people():
    """[(joints (K, 2) image px of labelled joints, box, (w, h))] from the real COCO sample."""
    d = json.loads((DATA / "coco" / "test_coco.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in d["images"]}
    out = []
    for ann in d["annotations"]:
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        if (kp[:, 2] > 0).sum() >= 2:
            out.append((kp[kp[:, 2] > 0, :2], ann["bbox"], sizes[ann["image_id"]]))
    return out


def mpii_people():
    """[(joints (K, 2) 0-based image px of labelled joints, center, scale)] from the real MPII sample."""
    out = []
    for e in json.loads((DATA / "mpii" / "test_mpii.json").read_text()):
        vis = np.asarray(e["joints_vis"]) > 0
        out.append((np.asarray(e["joints"], float)[vis] - 1, np.asarray(e["center"], float) - 1, e["scale"]))
    return out


@pytest.mark.parametrize("rotation", [0.0, 17.5, -63.0, 90.0])
def test_crop_matrix_matches_hrnet_three_point_construction(rotation):
    for _, box, _ in coco_people():
        center, scale = box_to_center_scale(box, INPUT[1] / INPUT[0])
        for size in (INPUT, HEATMAP):
            ours = crop_matrix(center, scale, rotation, size)[:2]
            ref = hrnet_three_point_matrix(center, scale, rotation, size)
            # the reference goes through float32 points: compare at float32 accuracy of image coordinates
            assert np.allclose(ours[:, :2], ref[:, :2], atol=1e-5)
            assert np.allclose(ours[:, 2], ref[:, 2], atol=2e-3)


def test_rotation_is_counter_clockwise_like_cv2():
    center, scale, size = np.array([300.0, 200.0]), np.array([1.5, 2.0]), (256, 192)
    zoom = 192 / 300.0
    for angle in (30.0, -45.0):
        ours = crop_matrix(center, scale, angle, size)[:2]
        ref = cv2.getRotationMatrix2D((300.0, 200.0), angle, zoom)  # counter-clockwise about the centre
        ref[:, 2] += np.array(size[::-1]) / 2 - center  # then move the centre to the crop centre
        assert np.allclose(ours, ref, atol=1e-9)


def test_closed_form_inverse_is_exact():
    rng = np.random.default_rng(0)
    for _ in range(20):
        center = rng.uniform(0, 800, 2)
        scale = rng.uniform(0.2, 5.0, 2)
        rotation = rng.uniform(-180, 180)
        fwd = crop_matrix(center, scale, rotation, INPUT)
        inv = crop_matrix(center, scale, rotation, INPUT, inverse=True)
        assert np.allclose(inv @ fwd, np.eye(3), atol=1e-12)
        assert np.allclose(fwd @ inv, np.eye(3), atol=1e-12)


def test_vectorised_maps_equal_matrices_and_input_is_stride_times_heatmap():
    rng = np.random.default_rng(1)
    n, k = 5, 17
    pts = rng.uniform(0, 640, (n, k, 2))
    center, rot = rng.uniform(100, 500, (n, 2)), rng.uniform(-90, 90, n)
    scale = rng.uniform(0.5, 3, (n, 1)) * [1, 4 / 3]  # at the crop's aspect ratio
    crop = image_to_crop(pts, center, scale, INPUT, rot)
    heat = image_to_heatmap(pts, center, scale, HEATMAP, rot)
    for i in range(n):
        assert np.allclose(crop[i], apply_affine(pts[i], crop_matrix(center[i], scale[i], rot[i], INPUT)), atol=1e-9)
    assert np.allclose(crop / 4.0, heat, atol=1e-9)  # input px = stride x heatmap px


@pytest.mark.parametrize("rotation", [0.0, 30.0, -45.0])
@pytest.mark.parametrize("flip", [False, True])
def test_round_trip_on_real_coco_joints(rotation, flip):
    for joints, box, (width, _) in coco_people():
        pts = apply_affine(joints, hflip_matrix(width)) if flip else joints
        center, scale = box_to_center_scale(box, INPUT[1] / INPUT[0])
        if flip:
            center = center * [-1, 1] + [width - 1, 0]
        heat = image_to_heatmap(pts[None], center[None], scale[None], HEATMAP, np.array([rotation]))
        back = heatmap_to_image(heat, center[None], scale[None], HEATMAP, np.array([rotation]))[0]
        back = apply_affine(back, hflip_matrix(width)) if flip else back
        assert np.abs(back - joints).max() < 1e-4
        # the matrix route agrees with the vectorised one
        m = crop_matrix(center, scale, rotation, HEATMAP) @ (hflip_matrix(width) if flip else np.eye(3))
        assert np.abs(apply_affine(joints, m) - heat[0]).max() < 1e-9


@pytest.mark.parametrize("rotation", [0.0, -30.0])
def test_round_trip_on_real_mpii_joints_torch(rotation):
    for joints, center, s in mpii_people():
        scale = torch.tensor([[1.25 * s, 1.25 * s]], dtype=torch.float64)
        c = torch.as_tensor(center)[None]
        rot = torch.tensor([rotation], dtype=torch.float64)
        heat = image_to_heatmap(torch.as_tensor(joints)[None], c, scale, (64, 64), rot)
        back = heatmap_to_image(heat, c, scale, (64, 64), rot)
        assert isinstance(back, torch.Tensor) and back.dtype == torch.float64
        assert (back[0] - torch.as_tensor(joints)).abs().max() < 1e-4


def test_dtype_kind_and_integer_inputs_follow_inputs():
    c, s = np.array([[100.0, 100.0]]), np.array([[1.0, 4 / 3]])
    out32 = heatmap_to_image(torch.zeros(1, 3, 2), torch.as_tensor(c), torch.as_tensor(s), HEATMAP)
    assert out32.dtype == torch.float32
    out_np = heatmap_to_image(np.zeros((1, 3, 2), np.int64), c, s, HEATMAP)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float64
    # heatmap origin maps to the box's top-left corner (HRNet: centre at heatmap (w/2, h/2))
    assert np.allclose(out_np[0, 0], [100 - 100, 100 - 200 / 1.5])
    with pytest.raises(ValueError, match="expected coords"):
        heatmap_to_image(np.zeros((1, 3, 3)), c, s, HEATMAP)


def test_box_to_center_scale_hrnet_numbers():
    center, scale = box_to_center_scale([10, 20, 100, 50], 0.75)  # wide box: height grows to 100 / 0.75
    assert np.allclose(center, [60, 45])
    assert np.allclose(scale, [100 / 200 * 1.25, 100 / 0.75 / 200 * 1.25])
    center, scale = box_to_center_scale(np.array([[0, 0, 30, 200], [5, 5, 150, 200]]), 0.75, padding=1.0)
    assert np.allclose(scale, [[0.75, 1.0], [0.75, 1.0]])
    assert np.allclose(scale[:, 0] / scale[:, 1], 0.75)
    assert np.allclose(center, [[15, 100], [80, 105]])


def test_flip_matrix_matches_array_mirroring_on_a_real_image():
    image = cv2.imread(str(DATA / "coco" / "000000000785.jpg"))
    h, w = image.shape[:2]
    center, scale = box_to_center_scale([280.79, 44.73, 218.7, 346.68], 0.75)
    mirrored_center = np.array([w - 1 - center[0], center[1]])
    m = crop_matrix(mirrored_center, scale, 20.0, INPUT)
    direct = cv2.warpAffine(image, (m @ hflip_matrix(w))[:2], INPUT, flags=cv2.INTER_LINEAR)
    via_array = cv2.warpAffine(np.ascontiguousarray(image[:, ::-1]), m[:2], INPUT, flags=cv2.INTER_LINEAR)
    assert np.abs(direct.astype(int) - via_array.astype(int)).max() <= 1


def test_heatmap_hflip_describes_mirroring_the_input_crop():
    image = cv2.imread(str(DATA / "coco" / "000000000785.jpg"))
    joints, box, _ = coco_people()[0]
    center, scale = box_to_center_scale(box, 0.75)
    m = crop_matrix(center, scale, 0.0, INPUT)
    mirror = hflip_matrix(INPUT[0])
    crop = cv2.warpAffine(image, m[:2], INPUT, flags=cv2.INTER_LINEAR)
    crop_of_mirror = cv2.warpAffine(image, (mirror @ m)[:2], INPUT, flags=cv2.INTER_LINEAR)
    assert np.abs(crop[:, ::-1].astype(int) - crop_of_mirror.astype(int)).max() <= 1
    heat = apply_affine(joints, m) / 4
    heat_in_mirror = apply_affine(joints, mirror @ m) / 4
    assert np.allclose(heatmap_hflip(heat, INPUT[0], 4), heat_in_mirror, atol=1e-9)
    # i.e. x -> W_hm - 1/4 - x, not the array mirror W_hm - 1 - x
    assert np.allclose(heat_in_mirror[:, 0], HEATMAP[0] - 0.25 - heat[:, 0], atol=1e-9)


def test_crop_to_image_inverts_image_to_crop_with_anisotropic_scale():
    rng = np.random.default_rng(2)
    pts = rng.uniform(-50, 700, (3, 9, 2))
    center, scale, rot = rng.uniform(100, 500, (3, 2)), rng.uniform(0.3, 3, (3, 2)), rng.uniform(-180, 180, 3)
    back = crop_to_image(image_to_crop(pts, center, scale, (100, 37), rot), center, scale, (100, 37), rot)
    assert np.abs(back - pts).max() < 1e-9
