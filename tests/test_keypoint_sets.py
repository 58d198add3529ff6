"""Other keypoint sets in COCO format (hdm.data.keypoints, the loader, hdm.metrics, the oracle): joint sets
detected from names in any spelling or named explicitly, flip pairs from names, OKS sigmas from metadata.

Fixtures: tests/data/keypoint_sets (made by its make_fixtures.py): CrowdPose's 14 joints, 16 MPII-order joints
in LIP's spelling, and a made-up 9-joint quadruped with its own sigmas in category 3. Every labelled joint
lies inside its box, so sub-pixel oracles must reach AP = 1 on each."""

import json
from pathlib import Path

import numpy as np
import pytest

from hdm.data import CocoTopDown, JointSetError, get_joint_set
from hdm.data.keypoints import (
    AIC,
    COCO,
    CROWDPOSE,
    JOINT_SETS,
    LIP,
    MPII,
    POSETRACK,
    UNIFORM_SIGMA,
    JointSet,
    canonical_name,
    flip_pairs_from_names,
    joint_set_from_names,
)
from hdm.geometry import heatmap_to_image
from hdm.metrics import COCO_SIGMAS, coco_keypoint_eval, make_coco_results, oks_nms, pck_joints, pckh
from hdm.oracle import WIDE_WINDOW, oracle_evaluate, oracle_predictions

FIXTURES = Path(__file__).parent / "data" / "keypoint_sets"
SMALL, LARGE = ((128, 96), (32, 24)), ((256, 192), (64, 48))  # (input, heatmap) sizes, (H, W) px
ANIMAL_SIGMAS = json.loads((FIXTURES / "animal.json").read_text())["info"]["sigmas"]
CASES = {  # fixture -> (CocoTopDown keyword arguments, expected joint set name, K, flip pairs by name)
    "crowdpose": ({}, "crowdpose", 14, {("left_ankle", "right_ankle"), ("left_shoulder", "right_shoulder")}),
    "lip": ({}, "lip", 16, {("L_Ankle", "R_Ankle"), ("L_Wrist", "R_Wrist")}),
    "mhp": ({"joint_set": "mhp"}, "mhp", 16, {("left_ankle", "right_ankle")}),
    "animal": ({"sigmas": ANIMAL_SIGMAS}, "custom", 9,
               {("L_Eye", "rightEye"), ("leftFrontPaw", "Right-front-paw"), ("hind_paw_l", "hind paw r")}),
}  # fmt: skip
FILES = {"crowdpose": "crowdpose.json", "lip": "mhp.json", "mhp": "mhp.json", "animal": "animal.json"}


def dataset(case: str, sizes=SMALL, **kwargs) -> CocoTopDown:
    options = dict(CASES[case][0], **kwargs)
    return CocoTopDown(FIXTURES / FILES[case], FIXTURES, *sizes, **options)


def named_pairs(js: JointSet) -> set:
    return {tuple(sorted((js.names[i], js.names[j]))) for i, j in js.flip_pairs}


# ---------------------------------------------------------------- joint sets


def test_builtin_sets_are_consistent():
    assert set(JOINT_SETS) == {"coco", "posetrack", "crowdpose", "aic", "mpii", "mhp", "lip"}
    sizes = {"coco": 17, "posetrack": 17, "crowdpose": 14, "aic": 14, "mpii": 16, "mhp": 16, "lip": 16}
    for name, js in JOINT_SETS.items():
        assert js.name == name and js.num_joints == sizes[name] and len(js.sigmas) == js.num_joints
        assert flip_pairs_from_names(js.names) == js.flip_pairs  # every twin found from the names alone
        assert sorted(js.upper_body + js.lower_body) == list(range(js.num_joints))
        shoulder, hip = (canonical_name(js.names[j]) for j in js.torso_joints)
        assert (shoulder, hip) == ("left_shoulder", "right_hip")
        perm = js.flip_permutation()
        assert np.array_equal(perm[perm], np.arange(js.num_joints))
    assert np.allclose(COCO.sigmas, COCO_SIGMAS) and POSETRACK.sigmas == COCO.sigmas
    assert CROWDPOSE.sigmas[:12] == COCO.sigmas[5:]  # CrowdPose's limbs keep COCO's constants
    assert get_joint_set("CrowdPose") is CROWDPOSE and get_joint_set(AIC) is AIC
    with pytest.raises(JointSetError, match=r"unknown joint set 'halpe'.*\['aic', 'coco'"):
        get_joint_set("halpe")


@pytest.mark.parametrize(
    "left, right",
    [("left_ankle", "right_ankle"), ("Left Shoulder", "Right Shoulder"), ("Left-ankle", "Right-ankle"),
     ("l_ankle", "r_ankle"), ("L_Ankle", "R_Ankle"), ("leftAnkle", "rightAnkle"), ("LAnkle", "RAnkle"),
     ("ankle_left", "ankle_right"), ("ankle_l", "ankle_r"), ("front_left_paw", "front_right_paw"),
     ("LEFT_KNEE", "RIGHT_KNEE")],
)  # fmt: skip
def test_flip_pairs_from_common_spellings(left, right):
    # was: pairs only for the exact prefixes "left_"/"right_": every other spelling flipped nothing, silently
    names = ["nose", right, "neck", left, "tail"]
    assert flip_pairs_from_names(names) == ((1, 3),)
    assert canonical_name(left).startswith("left_") and canonical_name(right).startswith("right_")


def test_sided_names_without_twin_are_refused_where_flipping_needs_them(tmp_path):
    with pytest.raises(JointSetError, match=r"'left_ear' \(no twin\)"):
        flip_pairs_from_names(["nose", "left_ear", "tail"])
    with pytest.raises(JointSetError, match="more than one per side"):
        flip_pairs_from_names(["left_eye", "l eye", "right_eye"])
    js = joint_set_from_names(["nose", "left_ear", "tail"])
    assert js.name == "custom" and js.flip_pairs is None
    assert joint_set_from_names(["wrist", "thumb1", "thumb2"]).flip_pairs == ()  # nothing sided: nothing to flip
    data = json.loads((FIXTURES / "animal.json").read_text())
    data["categories"][0]["keypoints"][2] = "eye_3"  # "L_Eye" loses its twin
    path = tmp_path / "unpaired.json"
    path.write_text(json.dumps(data))
    val = CocoTopDown(path, FIXTURES, *SMALL)  # evaluation without flipping still works
    with pytest.raises(JointSetError, match=r"'L_Eye' \(no twin\).*flip=False"):
        val.flip_pairs  # noqa: B018 (the flip test asks for them)
    with pytest.raises(JointSetError, match="'L_Eye'"):
        CocoTopDown(path, FIXTURES, *SMALL, train=True, half_body_prob=0.0)
    train = CocoTopDown(path, FIXTURES, *SMALL, train=True, flip=False, half_body_prob=0.0)
    assert all(not train.sample_geometry(i)["flipped"] for i in range(len(train)))


def test_detection_from_names_in_any_spelling_and_order():
    respelled = [n.replace("left_", "Left ").replace("right_", "Right ").title() for n in COCO.names]
    js = joint_set_from_names(respelled)
    assert js.name == "coco" and js.flip_pairs == COCO.flip_pairs and js.sigmas == COCO.sigmas
    assert joint_set_from_names(COCO.names) is COCO
    order = np.random.default_rng(0).permutation(14)
    shuffled = [CROWDPOSE.names[j] for j in order]
    shuffled[list(order).index(12)] = "top_head"  # mmpose's spelling of CrowdPose's head
    js = joint_set_from_names(shuffled)
    assert js.name == "crowdpose" and js.names == tuple(shuffled)
    assert js.sigmas == tuple(CROWDPOSE.sigmas[j] for j in order)
    assert named_pairs(js) == {tuple(sorted((shuffled[i], shuffled[j]))) for i, j in js.flip_pairs}
    assert {tuple(sorted(shuffled[k] for k in p)) for p in js.flip_pairs} == {
        tuple(sorted(CROWDPOSE.names[k] for k in p)) for p in CROWDPOSE.flip_pairs
    }
    for known in (POSETRACK, AIC, MPII, LIP):
        assert joint_set_from_names(known.names) is known
    assert joint_set_from_names([f"r_{n[6:]}" if n.startswith("right_") else n for n in MPII.names]).name == "mpii"
    with pytest.raises(JointSetError, match="spell the same joint"):
        joint_set_from_names(["left_eye", "LeftEye"])


def test_joint_set_checks_its_metadata():
    with pytest.raises(JointSetError, match="3 positive numbers"):
        JointSet("x", ("a", "b", "c"), (), sigmas=(0.1, 0.1))
    with pytest.raises(JointSetError, match="outside 0..2"):
        JointSet("x", ("a", "b", "c"), ((0, 3),))
    js = JointSet("x", ("a", "b", "c"), ()).with_sigmas("uniform")
    assert js.sigmas == (UNIFORM_SIGMA,) * 3 and 0.06 < UNIFORM_SIGMA < 0.075


# ---------------------------------------------------------------- the fixtures: load, crop, oracle AP 1


@pytest.mark.parametrize("case", CASES)
def test_other_keypoint_sets_load_and_crop(case):
    kwargs, name, k, pairs = CASES[case]
    ds = dataset(case)
    assert ds.joint_set.name == name and ds.num_joints == k and len(ds) == 3
    assert {tuple(sorted(p)) for p in pairs} <= named_pairs(ds.joint_set) and len(ds.sigmas) == k
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 128, 96) and s["joints"].shape == (k, 2) and s["keypoint_flags"].shape == (k,)
        labelled = s["keypoint_flags"] > 0
        assert bool((s["visibility"][labelled] == 1).all())  # every labelled joint inside the heatmap
        back = heatmap_to_image(s["joints"][None].double(), s["center"][None].double(), s["scale"][None].double(), (32, 24))
        assert np.abs(back[0].numpy() - s["image_joints"].numpy())[labelled.numpy()].max() < 2e-3
    body = {"half_body_prob": 0.0} if case == "animal" else {}
    train = dataset(case, train=True, seed=1, **body)
    flips = 0
    for epoch in range(3):
        train.set_epoch(epoch)
        for i in range(len(train)):
            s = train[i]
            back = heatmap_to_image(s["joints"][None].double(), s["center"][None].double(), s["scale"][None].double(),
                                    (32, 24), s["rotation"][None].double())[0].numpy()  # fmt: skip
            if s["flipped"]:
                flips += 1
                back = np.stack([159 - back[:, 0], back[:, 1]], 1)[train.joint_set.flip_permutation()]
            labelled = s["image_joints"].abs().sum(1).numpy() > 0
            assert np.abs(back - s["image_joints"].numpy())[labelled].max() < 2e-3
    assert flips > 0


@pytest.mark.parametrize("case", CASES)
def test_subpixel_oracles_reach_ap_1_on_other_keypoint_sets(case):
    # was (crowdpose): ValueError inside pycocotools: operands could not be broadcast together with shapes (14,) (17,)
    exact = oracle_evaluate(dataset(case), "subpixel_dot", "local_com")
    for metric in ("AP", "AP50", "AP75", "AR"):
        assert exact[metric] == pytest.approx(1.0, abs=1e-9), (case, metric)
    assert exact["persons"] == 3 and exact["joints_outside"] == 0 and exact["error_heatmap_px"] < 1e-9
    smooth = oracle_evaluate(dataset(case, LARGE), "subpixel_gaussian", "local_com", window=WIDE_WINDOW)
    assert smooth["AP"] == pytest.approx(1.0, abs=1e-9) and smooth["error_image_px"] < 0.05
    coarse = oracle_evaluate(dataset(case), "dot", "argmax_shift")  # rounded to 24x32 pixels
    assert 0.1 < coarse["error_heatmap_px"] < 0.71 and 0 < coarse["AP"] <= 1.0


def test_missing_area_and_num_keypoints_are_filled():
    # was: KeyError 'area' / 'num_keypoints' inside COCOeval
    for case, key in (("crowdpose", "area"), ("lip", "num_keypoints")):
        raw = json.loads((FIXTURES / FILES[case]).read_text())["annotations"]
        assert all(key not in a for a in raw)
        ds = dataset(case)
        for ann in ds.coco.dataset["annotations"]:
            assert ann["area"] > 0 and ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])
        if key == "area":  # from the box
            assert [r.area for r in ds.records] == [a["bbox"][2] * a["bbox"][3] for a in raw]


def test_unknown_set_without_sigmas_refuses_evaluation():
    ds = CocoTopDown(FIXTURES / "animal.json", FIXTURES, *SMALL)
    assert ds.joint_set.name == "custom" and ds.sigmas is None
    with pytest.raises(JointSetError, match=r"'custom' \(9 joints: nose, L_Eye.*no OKS sigmas.*sigmas='uniform'"):
        oracle_evaluate(ds, "subpixel_dot", "local_com")
    uniform = oracle_evaluate(dataset("animal", sigmas="uniform"), "subpixel_dot", "local_com")
    assert uniform["AP"] == pytest.approx(1.0)
    pred = oracle_predictions(ds, "subpixel_dot", "local_com")
    results = make_coco_results(pred.image_coords, pred.maxvals, pred.image_ids, np.ones(3), pred.areas,
                                use_nms=False, rescoring=False, category_id=ds.category_id)  # fmt: skip
    assert coco_keypoint_eval(ds.coco, results, sigmas=ANIMAL_SIGMAS)["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"category_id \[1\].*category_id=dataset.category_id"):
        coco_keypoint_eval(ds.coco, [dict(r, category_id=1) for r in results], sigmas=ANIMAL_SIGMAS)


def test_sigmas_of_the_wrong_length_fail_clearly():
    ds = dataset("crowdpose")
    pred = oracle_predictions(ds, "subpixel_dot", "local_com")
    results = make_coco_results(pred.image_coords, pred.maxvals, pred.image_ids, np.ones(3), pred.areas,
                                use_nms=False, rescoring=False)  # fmt: skip
    assert coco_keypoint_eval(ds.coco, results)["AP"] == pytest.approx(1.0)  # sigmas found from the names
    with pytest.raises(JointSetError, match="17 OKS sigmas for the ground truth's keypoints .* with 14 joints"):
        coco_keypoint_eval(ds.coco, results, sigmas=COCO_SIGMAS)
    with pytest.raises(JointSetError, match="17 OKS sigmas for the poses with 14 joints.*sigmas=dataset.sigmas"):
        make_coco_results(pred.image_coords, pred.maxvals, pred.image_ids, np.ones(3), pred.areas)
    poses = [dict(r, area=float(a)) for r, a in zip(results, pred.areas)]
    with pytest.raises(JointSetError, match="14 joints"):
        oks_nms(poses)
    kept = make_coco_results(pred.image_coords, pred.maxvals, pred.image_ids, np.ones(3), pred.areas, sigmas=ds.sigmas)
    assert len(kept) == 3 and sorted(oks_nms(poses[:2], sigmas=ds.sigmas)) == [0, 1]  # two distinct persons
    with pytest.raises(JointSetError, match="joint set 'coco' has 17 joints but the data has 14"):
        dataset("crowdpose", joint_set="coco")


# ---------------------------------------------------------------- PCK normalising joints


def test_pck_normalised_by_joints_and_pckh_in_any_spelling():
    gt = np.zeros((2, 3, 2))
    gt[:, 1] = [0.0, 10.0]  # torso of length 10 between joints 0 and 1
    pred = gt.copy()
    pred[:, 2] += [1.5, 0.0]  # joint 2 off by 1.5 = 0.15 torso
    visible = np.ones((2, 3), bool)
    visible[1, 1] = False  # instance 1 lacks a torso joint: left out
    result = pck_joints(pred, gt, visible, (0, 1), threshold=0.2)
    assert result.mean == 1.0 and result.counts.tolist() == [1, 1, 1]
    assert pck_joints(pred, gt, visible, (0, 1), threshold=0.1).per_joint.tolist() == [1.0, 1.0, 0.0]
    rng = np.random.default_rng(0)
    gt16, pred16 = rng.uniform(0, 100, (4, 16, 2)), rng.uniform(0, 100, (4, 16, 2))
    vis16, head = rng.random((4, 16)) > 0.2, np.full(4, 40.0)
    short = pckh(pred16, gt16, vis16, head)  # MPII_JOINTS spelling (r_ankle...)
    assert short.equals(pckh(pred16, gt16, vis16, head, joint_names=MPII.names))  # right_ankle...


# ---------------------------------------------------------------- files as they ship


def test_a_skeleton_that_does_not_fit_is_dropped_with_a_warning(tmp_path, caplog):
    # was: AnnotationError "skeleton edge [16, 14] must be two 1-based keypoint indices in 1..14": real CrowdPose
    # files (COCO's 17-joint skeleton beside 14 keypoints) refused over a field used only for drawing
    data = json.loads((FIXTURES / "crowdpose.json").read_text())
    data["categories"][0]["skeleton"] = [[a + 1, b + 1] for a, b in COCO.skeleton]  # as CrowdPose ships it
    path = tmp_path / "crowdpose.json"
    path.write_text(json.dumps(data))
    with caplog.at_level("WARNING", logger="hdm.data"):
        ds = CocoTopDown(path, FIXTURES, *SMALL)
    assert ds.joint_set.name == "crowdpose" and ds.joint_set.skeleton == CROWDPOSE.skeleton and len(ds) == 3
    assert str(path) in caplog.text and "skeleton" in caplog.text and "[16, 14]" in caplog.text
    assert "skeleton" not in ds.coco.cats[1]
    assert oracle_evaluate(ds, "subpixel_dot", "local_com")["AP"] == pytest.approx(1.0)
    # a custom set: 0-based edges, and a skeleton that is not a list of pairs
    for skeleton in ([[0, 1], [1, 2]], "nose-eye", [[1, 2, 3]]):
        data = json.loads((FIXTURES / "animal.json").read_text())
        data["categories"][0]["skeleton"] = skeleton
        path.write_text(json.dumps(data))
        caplog.clear()
        with caplog.at_level("WARNING", logger="hdm.data"):
            ds = CocoTopDown(path, FIXTURES, *SMALL, sigmas="uniform")
        assert ds.joint_set.skeleton == () and len(ds) == 3 and "skeleton" in caplog.text
