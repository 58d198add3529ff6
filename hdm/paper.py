"""Numbers the paper reports (supplementary), to show beside ours. Source: ``../shared/reference/facts.md``.

These are the paper's figures, never ours: every number of ours comes from a run.
"""

from __future__ import annotations

import pandas as pd

# Table 1 (COCO val2017, HRNet-W48, pycocotools keypoint metrics, in %).
TABLE1 = pd.DataFrame(
    {
        "AP": [77.1, 46.6, 78.8],
        "AP50": [91.8, 86.0, 92.5],
        "AP75": [83.8, 45.1, 85.1],
        "APM": [73.5, 42.9, 75.0],
        "APL": [83.5, 52.9, 85.3],
        "AR": [81.8, 58.5, 83.1],
    },
    index=pd.Index(["gaussian", "dot", "hdm"], name="method"),
)

METHOD_LABELS = {
    "gaussian": "Gaussian-smoothed heatmap",
    "dot": "dot-annotated heatmap",
    "hdm": "Our method",
    "hdm_naive": "Ours, naive 1-pixel demanders",
    "hdm_sinkhorn": "Ours, entropic (Sinkhorn) solver",
}



def label(spec: str) -> str:
    """A readable name for a method or a variant spec (``hdm.config.parse_variant``), e.g.
    ``"hdm+supplier:softplus"`` -> ``"Our method (supplier softplus)"``."""
    method, _, rest = spec.partition("+")
    name = METHOD_LABELS.get(method, method)
    return f"{name} ({rest.replace('+', ', ').replace(':', ' ')})" if rest else name


# Fig. 1 (MPII val, original-image px): joint -> (baseline HRNet-W48, ours, ground truth).
FIG1_ROWS = {
    "upper neck": ((764.4, 315.3), (755.9, 313.7), (750.5, 297.7)),
    "left wrist": ((335.0, 77.6), (335.8, 76.1), (337.0, 74.0)),
    "left knee": ((780.7, 331.3), (777.2, 335.9), (777.0, 342.0)),
    "right knee": ((651.8, 889.1), (655.7, 877.5), (658.0, 865.0)),
}

# Fig. 3 failure cases (MPII val, original-image px), joints under severe occlusion.
FIG3_ROWS = {
    "right elbow": ((240.1, 209.5), (233.1, 213.7), (192.0, 217.0)),
    "left knee": ((543.3, 550.0), (549.4, 552.9), (554.0, 600.0)),
}
