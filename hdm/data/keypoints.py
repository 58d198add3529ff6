"""Joint sets: the per-dataset joint metadata (names, flip pairs, skeleton, OKS sigmas, body split, PCK
normalising joints) and the registry of built-in sets, with detection from a COCO-format category's names.

Indices are 0-based positions in the dataset's joint order (K joints). A flip pair ``(i, j)`` names the
anatomical left/right twins that trade places when an image is mirrored horizontally.

Built-in sets (``JOINT_SETS``; look one up with ``get_joint_set``): ``coco`` (17), ``posetrack`` (17, COCO's
order with ``head_bottom``/``head_top`` in place of the eyes), ``crowdpose`` (14), ``aic`` (AI Challenger, 14),
``mpii`` (16), ``mhp`` (16, MPII's joints) and ``lip`` (16, MPII's order in LIP's spelling). Joint names are
compared in a canonical spelling (``canonical_name``): ``Right Shoulder``, ``Right-shoulder``, ``r_shoulder``,
``R_Shoulder``, ``rightShoulder``, ``RShoulder`` and ``shoulder_right`` are all ``right_shoulder``.

Sources of the constants (facts only; values checked against mmpose's ``configs/_base_/datasets/{coco,crowdpose,
aic,mpii,mhp,posetrack18}.py``): COCO's sigmas are pycocotools' ``COCOeval.kpt_oks_sigmas``; CrowdPose's are
those of its evaluation code (COCO's limb constants, 0.079 for head and neck); AI Challenger's come from its
official ``keypoint_eval.py`` (delta = 2 sigma); MPII, MHP and LIP have no official OKS constants: we use the
COCO-derived values mmpose lists for ``mpii``/``mhp``; PoseTrack18 uses COCO's. LIP's joints are MPII's 16 in
MPII's order; its files spell them ``R_Ankle``... and the centre joints ``B_Pelvis``, ``B_Spine``, ``B_Neck``,
``B_Head``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace

import numpy as np

from hdm.data.errors import JointSetError

log = logging.getLogger(__name__)

COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# The skeleton of the COCO person category, converted from its 1-based indices.
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
# Per-joint OKS constants sigma_k of the COCO keypoint metric (pycocotools ``COCOeval.kpt_oks_sigmas``).
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
COCO_UPPER_BODY = tuple(range(0, 11))  # head, shoulders, elbows, wrists
COCO_LOWER_BODY = tuple(range(11, 17))  # hips, knees, ankles

MPII_JOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
)  # fmt: skip
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_SKELETON = (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
)  # fmt: skip
MPII_UPPER_BODY = (7, 8, 9, 10, 11, 12, 13, 14, 15)  # thorax and above, arms
MPII_LOWER_BODY = (0, 1, 2, 3, 4, 5, 6)  # legs and pelvis
# No official OKS constants exist for MPII's joints; these COCO-derived values are the ones mmpose lists for
# MPII and MHP (in MPII's joint order).
MPII_SIGMAS = (
    0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026,
    0.026, 0.026, 0.062, 0.072, 0.179, 0.179, 0.072, 0.062,
)  # fmt: skip

#: The per-joint sigma of ``sigmas="uniform"`` (used only when asked for explicitly): the mean of COCO's 17
#: sigmas, i.e. every joint counts as hard to place as COCO's average joint.
UNIFORM_SIGMA = round(float(np.mean(COCO_SIGMAS)), 4)

_SIDE_WORDS = {"left": "left", "l": "left", "right": "right", "r": "right"}


# ---------------------------------------------------------------------------------------------------------
# Names


def name_tokens(name: str) -> list[str]:
    """Lower-case words of a joint name: camelCase, spaces, ``_``, ``-`` and ``.`` separate them.

    ``"rightAnkle"``, ``"Right-ankle"``, ``"R_Ankle"``, ``"RAnkle"`` -> ``["right", "ankle"]`` / ``["r", "ankle"]``.
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def split_side(name: str) -> tuple[str | None, tuple[str, ...]]:
    """(side, other words) of a joint name: side is "left"/"right" when exactly one word is ``left``,
    ``right``, ``l`` or ``r`` (anywhere in the name) and other words remain, else None."""
    tokens = name_tokens(name)
    sided = [i for i, t in enumerate(tokens) if t in _SIDE_WORDS]
    if len(sided) != 1 or len(tokens) < 2:
        return None, tuple(tokens)
    i = sided[0]
    return _SIDE_WORDS[tokens[i]], tuple(tokens[:i] + tokens[i + 1 :])


def canonical_name(name: str) -> str:
    """The spelling names are compared in: lower-case words joined by ``_``, the side first and spelt out
    (``"R_Ankle"``, ``"rightAnkle"``, ``"ankle-right"`` -> ``"right_ankle"``)."""
    side, rest = split_side(name)
    return "_".join(((side,) if side else ()) + rest)


def flip_pairs_from_names(names) -> tuple[tuple[int, int], ...]:
    """Index pairs ``(i, j)``, ``i < j``, sorted, of the joints whose names differ only by side, in any of the
    spellings ``canonical_name`` reads (``left_x``/``right_x``, ``l_x``/``r_x``, ``L_X``, ``Left X``,
    ``leftX``, ``LX``, ``x_left``...).

    Raises:
        JointSetError: a name looks sided but has no unique twin (e.g. ``left_paw`` without ``right_paw``, or
            two spellings of one side): the mirror image of such a joint is unknown.
    """
    names = tuple(str(n) for n in names)
    groups: dict[tuple[str, ...], dict[str, list[int]]] = {}
    for k, name in enumerate(names):
        side, rest = split_side(name)
        if side:
            groups.setdefault(rest, {}).setdefault(side, []).append(k)
    pairs, problems = [], []
    for sides in groups.values():
        left, right = sides.get("left", []), sides.get("right", [])
        if len(left) == 1 and len(right) == 1:
            pairs.append(tuple(sorted((left[0], right[0]))))
        else:
            problems.append(
                " / ".join(repr(names[k]) for k in left + right)
                + (" (no twin)" if not (left and right) else " (more than one per side)")
            )
    if problems:
        raise JointSetError(
            f"keypoint names look left/right-sided but do not pair up: {', '.join(problems)}; flipping cannot "
            "mirror them: name the twins alike (left_x/right_x), give flip_pairs explicitly "
            "(hdm.data.keypoints.JointSet(..., flip_pairs=...)), or turn flipping off (flip=False, no flip test)"
        )
    return tuple(sorted(pairs))


def flip_permutation(num_joints: int, flip_pairs) -> np.ndarray:
    """(K,) int64 permutation swapping each flip pair ``(i, j)`` and fixing every other joint."""
    perm = np.arange(num_joints, dtype=np.int64)
    for i, j in flip_pairs:
        perm[i], perm[j] = j, i
    return perm


def uniform_sigmas(num_joints: int) -> tuple[float, ...]:
    """``UNIFORM_SIGMA`` for each of ``num_joints`` joints (the documented default for sets without sigmas)."""
    return (UNIFORM_SIGMA,) * int(num_joints)


# ---------------------------------------------------------------------------------------------------------
# JointSet


def _pair(p) -> tuple[int, int]:
    a, b = p
    return int(a), int(b)


@dataclass(frozen=True)
class JointSet:
    """Everything a dataset needs to know about its K joints.

    Attributes:
        name: registry key of a built-in set, or a free label ("custom").
        names: the K joint names, in the dataset's order.
        flip_pairs: left/right twins ``(i, j)``; ``()`` when the set has none; None when the names look sided
            but do not pair up (then flipping raises ``JointSetError``, see ``require_flip_pairs``).
        skeleton: edges ``(i, j)`` for drawing.
        upper_body, lower_body: the half-body augmentation split; both empty when unknown (then half-body
            augmentation cannot be used).
        sigmas: the K OKS constants of COCO-style AP, or None when unknown (then evaluation raises
            ``JointSetError``, see ``require_sigmas``).
        alt_names: per joint, other spellings accepted when detecting this set from a file's names.
        head_joints: ``(head top, neck)``-like pair whose distance can stand in for the head size of PCKh;
            None when the set has no such joints.
        torso_joints: ``(left shoulder, right hip)``, whose distance (the torso diameter) normalises torso PCK
            (``hdm.metrics.pck_joints``); None when absent.
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] | None
    skeleton: tuple[tuple[int, int], ...] = ()
    upper_body: tuple[int, ...] = ()
    lower_body: tuple[int, ...] = ()
    sigmas: tuple[float, ...] | None = None
    alt_names: tuple[tuple[str, ...], ...] = field(default=(), repr=False)
    head_joints: tuple[int, int] | None = None
    torso_joints: tuple[int, int] | None = None

    def __post_init__(self):
        set_ = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen dataclass)
        set_("names", tuple(str(n) for n in self.names))
        k = len(self.names)
        if k == 0:
            raise JointSetError(f"joint set {self.name!r} has no joints")
        if len(set(self.names)) != k:
            dupes = sorted({n for n in self.names if self.names.count(n) > 1})
            raise JointSetError(f"joint set {self.name!r} names a joint twice: {dupes}")
        if self.flip_pairs is not None:
            set_("flip_pairs", tuple(_pair(p) for p in self.flip_pairs))
            seen = [j for p in self.flip_pairs for j in p]
            if len(set(seen)) != len(seen) or any(a == b for a, b in self.flip_pairs):
                raise JointSetError(
                    f"joint set {self.name!r}: a joint appears in more than one flip pair: {self.flip_pairs}"
                )
        set_("skeleton", tuple(_pair(p) for p in self.skeleton))
        set_("upper_body", tuple(int(j) for j in self.upper_body))
        set_("lower_body", tuple(int(j) for j in self.lower_body))
        for key in ("head_joints", "torso_joints"):
            if getattr(self, key) is not None:
                set_(key, _pair(getattr(self, key)))
        indices = [j for p in (self.flip_pairs or ()) + self.skeleton for j in p]
        indices += list(self.upper_body + self.lower_body + (self.head_joints or ()) + (self.torso_joints or ()))
        bad = sorted({j for j in indices if not 0 <= j < k})
        if bad:
            raise JointSetError(f"joint set {self.name!r} refers to joints {bad} outside 0..{k - 1}")
        if self.sigmas is not None:
            sigmas = tuple(float(s) for s in self.sigmas)
            if len(sigmas) != k or not all(np.isfinite(s) and s > 0 for s in sigmas):
                raise JointSetError(
                    f"joint set {self.name!r}: sigmas must be {k} positive numbers (one per joint), got {list(sigmas)}"
                )
            set_("sigmas", sigmas)
        if self.alt_names:
            alt = tuple(tuple(str(a) for a in names) for names in self.alt_names)
            if len(alt) != k:
                raise JointSetError(f"joint set {self.name!r}: alt_names must hold one tuple per joint ({k})")
            set_("alt_names", alt)

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def require_flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """The flip pairs, or ``JointSetError`` saying why they are unknown and how to give them."""
        if self.flip_pairs is not None:
            return self.flip_pairs
        flip_pairs_from_names(self.names)  # raises with the names that do not pair up
        raise JointSetError(
            f"joint set {self.name!r} has no flip pairs: give them explicitly (JointSet(..., flip_pairs=...)) "
            "or turn flipping off (flip=False, no flip test)"
        )

    def flip_permutation(self) -> np.ndarray:
        """(K,) int64 index array ``perm`` with ``mirrored_joints = joints[perm]`` (left and right swapped).

        Raises ``JointSetError`` when the flip pairs are unknown."""
        return flip_permutation(self.num_joints, self.require_flip_pairs())

    def require_sigmas(self) -> np.ndarray:
        """(K,) float64 OKS sigmas, or ``JointSetError`` telling the user how to give them (on the command line
        and in Python)."""
        if self.sigmas is None:
            k = self.num_joints
            preview = ", ".join(self.names[:6]) + (", ..." if k > 6 else "")
            uniform = ",".join([f"{UNIFORM_SIGMA:g}"] * k)
            raise JointSetError(
                f"joint set {self.name!r} ({k} joints: {preview}) has no OKS sigmas, so COCO AP cannot be computed: "
                f"give one sigma per joint (command line: --set sigmas=s1,...,s{k}; Python: CocoTopDown(..., "
                f"sigmas=[...]) or coco_keypoint_eval(..., sigmas=[...])), name a built-in set (--set joint_set=NAME "
                f"or joint_set=NAME, one of {sorted(JOINT_SETS)}), or take {UNIFORM_SIGMA} for every joint "
                f"(--set sigmas={uniform}; Python: sigmas='uniform')"
            )
        return np.asarray(self.sigmas, dtype=np.float64)

    def with_sigmas(self, sigmas) -> JointSet:
        """A copy with OKS ``sigmas``: K positive numbers, or ``"uniform"`` (``UNIFORM_SIGMA`` each)."""
        if isinstance(sigmas, str):
            if sigmas != "uniform":
                raise JointSetError(f"sigmas must be K numbers or 'uniform', got {sigmas!r}")
            sigmas = uniform_sigmas(self.num_joints)
        return replace(self, sigmas=tuple(float(s) for s in sigmas))

    def reordered(self, order, names=None) -> JointSet:
        """The same joints in another order: joint ``i`` of the result is joint ``order[i]`` of this set.

        names: the result's names (default: this set's, reordered). Flip pairs, skeleton, body split, sigmas
        and the PCK joints follow the joints."""
        order = [int(j) for j in order]
        if sorted(order) != list(range(self.num_joints)):
            raise JointSetError(f"order must be a permutation of 0..{self.num_joints - 1}, got {order}")
        new = {old: i for i, old in enumerate(order)}
        remap = lambda pairs: tuple(tuple(sorted((new[a], new[b]))) for a, b in pairs)  # noqa: E731
        return JointSet(
            name=self.name,
            names=tuple(names) if names is not None else tuple(self.names[j] for j in order),
            flip_pairs=None if self.flip_pairs is None else tuple(sorted(remap(self.flip_pairs))),
            skeleton=tuple((new[a], new[b]) for a, b in self.skeleton),
            upper_body=tuple(sorted(new[j] for j in self.upper_body)),
            lower_body=tuple(sorted(new[j] for j in self.lower_body)),
            sigmas=None if self.sigmas is None else tuple(self.sigmas[j] for j in order),
            alt_names=tuple(self.alt_names[j] for j in order) if self.alt_names else (),
            head_joints=None if self.head_joints is None else tuple(new[j] for j in self.head_joints),
            torso_joints=None if self.torso_joints is None else tuple(new[j] for j in self.torso_joints),
        )

    def match_names(self, names) -> list[int] | None:
        """``order`` with ``names[i]`` = this set's joint ``order[i]`` (compared by ``canonical_name``, this
        set's ``alt_names`` accepted), or None when ``names`` are not exactly this set's joints."""
        names = list(names)
        if len(names) != self.num_joints:
            return None
        accepted: dict[str, int] = {}
        for j, own in enumerate(self.names):
            for spelling in (own,) + (self.alt_names[j] if self.alt_names else ()):
                accepted.setdefault(canonical_name(spelling), j)
        order = [accepted.get(canonical_name(n)) for n in names]
        if any(j is None for j in order) or len(set(order)) != len(order):
            return None
        return order


def _edges(names, pairs) -> tuple[tuple[int, int], ...]:
    index = {n: k for k, n in enumerate(names)}
    return tuple((index[a], index[b]) for a, b in pairs)


def _indices(names, wanted) -> tuple[int, ...]:
    index = {n: k for k, n in enumerate(names)}
    return tuple(sorted(index[w] for w in wanted))


COCO = JointSet(
    name="coco",
    names=COCO_JOINTS,
    flip_pairs=COCO_FLIP_PAIRS,
    skeleton=COCO_SKELETON,
    upper_body=COCO_UPPER_BODY,
    lower_body=COCO_LOWER_BODY,
    sigmas=COCO_SIGMAS,
    torso_joints=(5, 12),
)

POSETRACK_JOINTS = ("nose", "head_bottom", "head_top") + COCO_JOINTS[3:]
POSETRACK = JointSet(
    name="posetrack",
    names=POSETRACK_JOINTS,
    flip_pairs=COCO_FLIP_PAIRS[1:],
    skeleton=COCO_SKELETON[:12] + ((0, 1), (0, 2), (1, 5), (1, 6)),
    upper_body=COCO_UPPER_BODY,
    lower_body=COCO_LOWER_BODY,
    sigmas=COCO_SIGMAS,  # PoseTrack18's evaluation reuses COCO's constants
    head_joints=(2, 1),
    torso_joints=(5, 12),
)

_LIMBS = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
_LIMB_EDGES = (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
)  # fmt: skip
_NECK_EDGES = (("neck", "left_shoulder"), ("neck", "right_shoulder"))

CROWDPOSE_JOINTS = _LIMBS + ("head", "neck")
CROWDPOSE = JointSet(
    name="crowdpose",
    names=CROWDPOSE_JOINTS,
    flip_pairs=flip_pairs_from_names(CROWDPOSE_JOINTS),
    skeleton=_edges(CROWDPOSE_JOINTS, _LIMB_EDGES + (("head", "neck"),) + _NECK_EDGES),
    upper_body=_indices(CROWDPOSE_JOINTS, _LIMBS[:6] + ("head", "neck")),
    lower_body=_indices(CROWDPOSE_JOINTS, _LIMBS[6:]),
    # CrowdPose's evaluation (crowdposetools): COCO's limb constants, 0.079 for head and neck
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
    alt_names=((),) * 12 + (("top_head",), ()),  # mmpose spells CrowdPose's head "top_head"
    head_joints=(12, 13),
    torso_joints=(0, 7),
)

AIC_JOINTS = (
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck",
)  # fmt: skip
AIC = JointSet(
    name="aic",
    names=AIC_JOINTS,
    flip_pairs=flip_pairs_from_names(AIC_JOINTS),
    skeleton=_edges(AIC_JOINTS, _LIMB_EDGES + (("head_top", "neck"),) + _NECK_EDGES),
    upper_body=_indices(AIC_JOINTS, _LIMBS[:6] + ("head_top", "neck")),
    lower_body=_indices(AIC_JOINTS, _LIMBS[6:]),
    # AI Challenger's keypoint_eval.py (delta = 2 sigma)
    sigmas=(
        0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
        0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173,
    ),  # fmt: skip
    head_joints=(12, 13),
    torso_joints=(3, 6),
)

MPII = JointSet(
    name="mpii",
    names=MPII_JOINTS,
    flip_pairs=MPII_FLIP_PAIRS,
    skeleton=MPII_SKELETON,
    upper_body=MPII_UPPER_BODY,
    lower_body=MPII_LOWER_BODY,
    sigmas=MPII_SIGMAS,
    head_joints=(9, 8),
    torso_joints=(13, 2),
)
MHP = replace(MPII, name="mhp")  # LV-MHP annotates MPII's 16 joints in MPII's order

LIP_JOINTS = (
    "R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "B_Pelvis", "B_Spine", "B_Neck", "B_Head",
    "R_Wrist", "R_Elbow", "R_Shoulder", "L_Shoulder", "L_Elbow", "L_Wrist",
)  # fmt: skip
LIP = replace(
    MPII,
    name="lip",
    names=LIP_JOINTS,
    alt_names=((),) * 6 + (("pelvis",), ("spine",), ("neck",), ("head",)) + ((),) * 6,
)

#: Built-in joint sets by name (detection tries them in this order).
JOINT_SETS: dict[str, JointSet] = {
    js.name: js for js in (COCO, POSETRACK, CROWDPOSE, AIC, MPII, MHP, LIP)
}


def get_joint_set(name) -> JointSet:
    """The built-in joint set ``name`` (case-insensitive key of ``JOINT_SETS``); a ``JointSet`` is returned as is."""
    if isinstance(name, JointSet):
        return name
    key = str(name).strip().lower()
    if key not in JOINT_SETS:
        raise JointSetError(
            f"unknown joint set {name!r}: built-in sets are {sorted(JOINT_SETS)}; for another keypoint set pass a "
            "hdm.data.keypoints.JointSet(name, names, flip_pairs, sigmas=...)"
        )
    return JOINT_SETS[key]


def joint_set_from_names(names, skeleton=(), sigmas=None) -> JointSet:
    """The JointSet of a COCO-format category's keypoint ``names``.

    A built-in set when the names are its joints (in any spelling ``canonical_name`` reads, in any order: the
    set is then reordered to the file's order); otherwise a "custom" set with flip pairs found from the names
    (None when sided names do not pair up, see ``flip_pairs_from_names``), the given skeleton, no body split
    and the given ``sigmas`` (None: unknown, evaluation will ask for them).

    Args:
        names: K joint names. skeleton: edges as 0-based index pairs (kept for a custom set only).
        sigmas: K OKS constants or "uniform" to override the set's; None keeps the built-in set's.
    """
    names = tuple(str(n) for n in names)
    canonical = [canonical_name(n) for n in names]
    dupes = sorted({n for n, c in zip(names, canonical) if canonical.count(c) > 1})
    if dupes:
        raise JointSetError(f"keypoint names {dupes} spell the same joint; every joint needs its own name")
    joint_set = None
    for known in JOINT_SETS.values():
        order = known.match_names(names)
        if order is not None:
            same = names == known.names
            joint_set = known if same else known.reordered(order, names)
            break
    if joint_set is None:
        try:
            pairs = flip_pairs_from_names(names)
        except JointSetError:
            pairs = None
        joint_set = JointSet(name="custom", names=names, flip_pairs=pairs, skeleton=tuple(skeleton))
    return joint_set if sigmas is None else joint_set.with_sigmas(sigmas)


def resolve_joint_set(names=None, num_joints: int | None = None, joint_set=None, sigmas=None, skeleton=(),
                      source: str = "the annotations") -> JointSet:  # fmt: skip
    """The joint set of a dataset whose category lists keypoint ``names`` (or None) and ``num_joints``.

    Args:
        names: the category's keypoint names, or None when it lists none (then only 17-joint COCO data is
            understood without ``joint_set``).
        num_joints: K the annotations hold (checked against the set).
        joint_set: None to detect from ``names``; a key of ``JOINT_SETS``; or a ``JointSet``. A named set is
            reordered to the file's order when the names are its joints in another order.
        sigmas: K numbers or "uniform": override the set's OKS sigmas.
        source: what to name in errors (e.g. the annotation file).
    """
    if joint_set is None:
        if names:
            resolved = joint_set_from_names(names, skeleton)
        elif num_joints in (None, COCO.num_joints):
            resolved = COCO
        else:
            raise JointSetError(
                f"{source}: the keypoint category lists no keypoint names and annotations hold {num_joints} joints; "
                f"add 'keypoints' names to the category or name the joint set (joint_set= one of {sorted(JOINT_SETS)})"
            )
    else:
        resolved = get_joint_set(joint_set)
        if names:
            order = resolved.match_names(names)
            if order is None and len(names) == resolved.num_joints:
                log.warning(
                    "%s: keypoint names %s are not those of joint set %r %s; using the set as named, in the file's order",
                    source, list(names), resolved.name, list(resolved.names),
                )
            elif order is not None and order != list(range(resolved.num_joints)):
                resolved = resolved.reordered(order, tuple(names))
    k = len(names) if names else num_joints
    if k is not None and k != resolved.num_joints:
        raise JointSetError(
            f"{source}: joint set {resolved.name!r} has {resolved.num_joints} joints but the data has {k}; "
            "name the matching joint set or leave joint_set unset to detect it from the keypoint names"
        )
    return resolved if sigmas is None else resolved.with_sigmas(sigmas)
