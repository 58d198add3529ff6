"""hdm: a reproducible analysis of *Heatmap Distribution Matching for Human Pose Estimation*
(Qu, Xu, Cai, Foo, Liu; NeurIPS 2022).

Symbols used throughout: B images, K joints, H x W heatmap pixels, P = H*W suppliers, M demanders.
Coordinates are (x, y) in heatmap pixels with pixel centres on integers unless a name says otherwise.
"""

__version__ = "0.1.0"
