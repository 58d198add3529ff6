"""Theorem 1 of the paper (supplementary D, eqs. 4-6), checked by computer algebra and on real targets.

Theorem 1 (eq. 4), with ``l_MSE(a, b) = ||a - b||_2^2`` (a sum of squares over joints and pixels, not a mean):

    R(D_dot, φ, l_MSE) = R(D_Gau, φ, l_MSE) + 2 E[<H_pred, H_Gau>] - 2 E[<H_pred, H_dot>] - C,
    C = E[||H_Gau - H_dot||^2],

proved under eq. (5): ``||H_dot||^2 = <H_Gau, H_dot>`` (both targets are 1 at the dot pixel, the dot map is 0
elsewhere). Expanding both sides (done by sympy in :func:`symbolic_check`) gives, per sample and for *any* three
vectors,

    lhs - rhs = 2 (||H_dot||^2 - <H_Gau, H_dot>)            (EQ4_RESIDUAL_FACTOR = 2 times the eq. 5 gap),

so eq. 4 holds exactly when eq. 5 holds in expectation. Eq. 5 holds for HRNet's Gaussian (peak 1 at the *rounded*
pixel, :func:`hdm.targets.gaussian_heatmaps`); it breaks for a Gaussian centred on the exact sub-pixel joint, whose
value at the dot pixel is ``exp(-d^2 / 2σ^2) < 1`` (d = distance from the joint to its rounded pixel), giving a
per-joint gap ``1 - exp(-d^2 / 2σ^2)`` (:func:`eq5_violation`).

Legend: B images, K joints, H x W heatmap pixels, N offsets. ``joints: (B, K, 2) float, heatmap px, (x, y)``,
pixel centres on integer coordinates. Numeric results are computed in float64 (torch); nothing here plots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd
import sympy as sp
import torch

from hdm.targets import dot_heatmaps, rounded_pixels, subpixel_gaussian_heatmaps, target_weight

#: lhs - rhs of eq. 4 = EQ4_RESIDUAL_FACTOR * (||H_dot||^2 - <H_Gau, H_dot>); derived in :func:`symbolic_check`.
EQ4_RESIDUAL_FACTOR = 2

# ---------------------------------------------------------------------------------------------------------------
# Symbolic check (sympy)
# ---------------------------------------------------------------------------------------------------------------


class _Model:
    """A finite set of paired samples (H_pred, H_Gau, H_dot) with an inner product; E is the mean over samples.

    The paper's expectations over D_dot and D_Gau are over the same paired samples (its last step in eq. 6), so
    one list of triples serves both.
    """

    def __init__(self, samples: list[tuple], inner: Callable):
        self.samples = samples
        self.inner = inner

    def norm2(self, a):
        return self.inner(a, a)

    def E(self, f: Callable) -> sp.Expr:
        """Expectation of ``f(pred, gau, dot)`` over the samples (uniform weights)."""
        return sp.Rational(1, len(self.samples)) * sp.Add(*[f(*s) for s in self.samples])


def _coordinate_model(n_pixels: int, n_samples: int) -> _Model:
    """Every map is a length-``n_pixels`` vector of free real symbols; <a, b> = Σ_i a_i b_i."""
    samples = []
    for s in range(n_samples):
        triple = tuple(
            sp.Matrix(sp.symbols(f"{name}_{s}_0:{n_pixels}", real=True)) for name in ("p", "g", "d")
        )
        samples.append(triple)
    return _Model(samples, lambda a, b: (a.T * b)[0, 0])


def _gram_model() -> tuple[_Model, dict[str, sp.Symbol]]:
    """Abstract inner-product space: H_pred, H_Gau, H_dot are basis vectors with a symmetric Gram matrix of symbols.

    Every expression in eqs. 4-6 is a polynomial in the six Gram entries, so this model covers any real inner-product
    space (any number of pixels, joints, or a function space).
    """
    names = ("p", "g", "d")
    gram_symbols = {}
    gram = sp.zeros(3, 3)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            key = "".join(sorted(a + b))
            gram_symbols.setdefault(key, sp.Symbol(f"G_{{{key}}}", real=True))
            gram[i, j] = gram_symbols[key]
    basis = tuple(sp.eye(3)[:, i] for i in range(3))
    return _Model([basis], lambda a, b: (a.T * gram * b)[0, 0]), gram_symbols


def _eq4_sides(model: _Model) -> tuple[sp.Expr, sp.Expr]:
    """Both sides of eq. 4 in ``model``: (R_dot, R_Gau + 2 E<pred,Gau> - 2 E<pred,dot> - C)."""
    n2, ip, E = model.norm2, model.inner, model.E
    lhs = E(lambda p, g, d: n2(d - p))
    rhs = (
        E(lambda p, g, d: n2(g - p))
        + 2 * E(lambda p, g, d: ip(p, g))
        - 2 * E(lambda p, g, d: ip(p, d))
        - E(lambda p, g, d: n2(g - d))
    )
    return lhs, rhs


def _eq5_gap(model: _Model) -> sp.Expr:
    """E[||H_dot||^2 - <H_Gau, H_dot>]: zero exactly when eq. 5 holds in expectation."""
    return model.E(lambda p, g, d: model.norm2(d) - model.inner(g, d))


def _eq6_lines(model: _Model) -> list[sp.Expr]:
    """The seven members of the paper's chain (6), transcribed term by term from supplementary D."""
    n2, ip, E = model.norm2, model.inner, model.E
    return [
        E(lambda p, g, d: n2(d - p)),
        E(lambda p, g, d: n2(d) + n2(p) - 2 * ip(d, p)),
        E(lambda p, g, d: 2 * n2(d) - n2(d) + n2(p) - 2 * ip(d, p) + 2 * ip(g, p) - 2 * ip(g, p) + n2(g) - n2(g)),
        E(lambda p, g, d: n2(g) + n2(p) - 2 * ip(g, p) - n2(d) - n2(g) + 2 * n2(d) + 2 * ip(g, p) - 2 * ip(d, p)),
        E(lambda p, g, d: n2(g) + n2(p) - 2 * ip(g, p) - n2(g) - n2(d) + 2 * ip(g, d) + 2 * ip(g, p) - 2 * ip(d, p)),
        E(lambda p, g, d: n2(g - p) - n2(g - d) + 2 * ip(g, p) - 2 * ip(d, p)),
        # R(D_Gau) + 2 E_Gau[<pred, Gau>] - 2 E_dot[<pred, dot>] - E_dot[||Gau - dot||^2]
        E(lambda p, g, d: n2(g - p)) + 2 * E(lambda p, g, d: ip(p, g)) - 2 * E(lambda p, g, d: ip(p, d))
        - E(lambda p, g, d: n2(g - d)),
    ]


def _dot_structure(model: _Model, peak: Callable[[int], sp.Expr]) -> dict:
    """Substitution making sample s's H_dot = e_0 (dot at pixel 0) and H_Gau[0] = peak(s); other entries stay free."""
    subs = {}
    for s, (_, g, d) in enumerate(model.samples):
        for i in range(d.rows):
            subs[d[i]] = 1 if i == 0 else 0
        subs[g[0]] = peak(s)
    return subs


def _is_zero(expr: sp.Expr) -> bool:
    return sp.simplify(sp.expand(expr)) == 0


def symbolic_check(n_pixels: int = 3, n_samples: int = 2) -> dict:
    """Theorem 1 by computer algebra: eq. 4 ⇔ eq. 5, the residual without eq. 5, and every step of eq. 6.

    Two models: ``coordinate`` (``n_samples`` paired images, each map a vector of ``n_pixels`` free real symbols,
    E = mean over the images) and ``gram`` (abstract inner-product space, any dimension; Gram entries G_pp, G_gp,
    G_dp, G_gg, G_dg, G_dd). Nothing is typed in pre-expanded: sympy expands both sides and divides.

    Returns a dict with sympy objects and booleans:
        residual, gap: lhs - rhs of eq. 4 and the eq. 5 gap E[||H_dot||^2 - <H_Gau,H_dot>] (coordinate model);
        factor: residual / gap simplified (a number, 2); residual_is_factor_times_gap: bool;
        gram_residual, gram_gap, gram_factor, gram_residual_is_factor_times_gap: the same in the Gram model;
        residual_under_eq5, zero_under_eq5: residual after H_dot = e_j, H_Gau[j] = 1 (0, True);
        gram_zero_under_eq5: residual after substituting G_dd = G_dg;
        peak: the symbol γ = H_Gau[j]; residual_without_eq5: residual with H_Gau[j] = γ per image (2 - 2γ);
        offset, sigma: symbols (δx, δy), σ; residual_subpixel: with γ = exp(-(δx^2+δy^2)/(2σ^2));
        eq6_steps: list of dicts (step "k→k+1", difference line_{k+1} - line_k, identity: bool,
            holds_under_eq5: bool, in both models: ``difference``/``identity`` coordinate, ``gram_difference``/
            ``gram_identity``);
        latex: dict of LaTeX strings for the expressions above.
    Args:
        n_pixels: pixels per map in the coordinate model (≥ 2). n_samples: images in the coordinate model (≥ 1).
    """
    if n_pixels < 2 or n_samples < 1:
        raise ValueError(f"need n_pixels >= 2 and n_samples >= 1, got n_pixels={n_pixels}, n_samples={n_samples}")
    out: dict = {"n_pixels": n_pixels, "n_samples": n_samples}

    # (a) lhs - rhs is a multiple of the eq. 5 gap, for any maps.
    coord = _coordinate_model(n_pixels, n_samples)
    lhs, rhs = _eq4_sides(coord)
    residual = sp.factor(sp.expand(lhs - rhs))
    gap = sp.expand(_eq5_gap(coord))
    factor = sp.simplify(residual / gap)
    out.update(residual=residual, gap=gap, factor=factor)
    out["residual_is_factor_times_gap"] = bool(factor.is_number and _is_zero(residual - factor * gap))

    gram, gsym = _gram_model()
    glhs, grhs = _eq4_sides(gram)
    gram_residual = sp.expand(glhs - grhs)
    gram_gap = sp.expand(_eq5_gap(gram))
    gram_factor = sp.simplify(gram_residual / gram_gap)
    out.update(gram_residual=gram_residual, gram_gap=gram_gap, gram_factor=gram_factor)
    out["gram_residual_is_factor_times_gap"] = bool(
        gram_factor.is_number and _is_zero(gram_residual - gram_factor * gram_gap)
    )
    eq5_in_gram = {gsym["dd"]: gsym["dg"]}
    out["gram_zero_under_eq5"] = _is_zero(gram_residual.subs(eq5_in_gram))

    # (b) the dot structure of eq. 5 makes the residual exactly 0.
    out["residual_under_eq5"] = sp.expand((lhs - rhs).subs(_dot_structure(coord, lambda s: 1)))
    out["zero_under_eq5"] = out["residual_under_eq5"] == 0

    # (c) without it (H_Gau[j] = γ ≠ 1) the residual is 2(1 - γ); sub-pixel Gaussians have γ = exp(-d²/2σ²).
    peak = sp.Symbol("gamma", positive=True)
    dx, dy = sp.symbols("delta_x delta_y", real=True)
    sigma = sp.Symbol("sigma", positive=True)
    one_image = _coordinate_model(n_pixels, 1)
    lhs1, rhs1 = _eq4_sides(one_image)
    without = sp.factor(sp.expand((lhs1 - rhs1).subs(_dot_structure(one_image, lambda s: peak))))
    out.update(peak=peak, offset=(dx, dy), sigma=sigma, residual_without_eq5=without)
    out["residual_subpixel"] = without.subs(peak, sp.exp(-(dx**2 + dy**2) / (2 * sigma**2)))

    # Eq. 6: every consecutive pair of lines, in both models.
    lines, glines = _eq6_lines(coord), _eq6_lines(gram)
    dot_subs = _dot_structure(coord, lambda s: 1)
    steps = []
    for k in range(len(lines) - 1):
        diff = sp.factor(sp.expand(lines[k + 1] - lines[k]))
        gdiff = sp.factor(sp.expand(glines[k + 1] - glines[k]))
        steps.append(
            {
                "step": f"{k + 1}→{k + 2}",
                "difference": diff,
                "identity": diff == 0,
                "holds_under_eq5": _is_zero(diff.subs(dot_subs)),
                "gram_difference": gdiff,
                "gram_identity": gdiff == 0,
                "gram_holds_under_eq5": _is_zero(gdiff.subs(eq5_in_gram)),
            }
        )
    out["eq6_steps"] = steps
    out["eq6_chain_holds_under_eq5"] = all(s["holds_under_eq5"] and s["gram_holds_under_eq5"] for s in steps)
    out["eq6_steps_needing_eq5"] = [s["step"] for s in steps if not s["identity"]]

    out["latex"] = {
        key: sp.latex(out[key])
        for key in (
            "residual", "gap", "factor", "gram_residual", "gram_gap", "gram_factor",
            "residual_without_eq5", "residual_subpixel",
        )
    }
    out["latex"]["eq6_differences"] = [sp.latex(s["gram_difference"]) for s in steps]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Numeric check (torch, float64)
# ---------------------------------------------------------------------------------------------------------------


def _check_maps(**maps: torch.Tensor) -> None:
    shapes = {name: tuple(m.shape) for name, m in maps.items()}
    first = next(iter(shapes.values()))
    if len(first) != 4 or any(s != first for s in shapes.values()):
        raise ValueError(f"expected heatmaps of one shape (B, K, H, W), got {shapes}")


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a, b> per image: (B, K, H, W) x2 → (B,), summed over joints and pixels, float64."""
    return (a.double() * b.double()).sum(dim=(1, 2, 3))


def eq5_gap_per_joint(gauss: torch.Tensor, dot: torch.Tensor) -> torch.Tensor:
    """||H_dot^k||^2 - <H_Gau^k, H_dot^k> per image and joint (eq. 5 holds where this is 0).

    Args:
        gauss, dot: (B, K, H, W) target heatmaps.
    Returns:
        (B, K) float64.
    """
    _check_maps(gauss=gauss, dot=dot)
    dot, gauss = dot.double(), gauss.double()
    return (dot * dot - gauss * dot).sum(dim=(2, 3))


def theorem1_terms(pred: torch.Tensor, gauss: torch.Tensor, dot: torch.Tensor) -> dict[str, float]:
    """Every term of eq. 4 on a batch, E = mean over images of the sum over joints and pixels (float64).

    Args:
        pred: (B, K, H, W) predicted heatmaps. gauss: (B, K, H, W) H_Gau. dot: (B, K, H, W) H_dot.
    Returns:
        dict of floats: R_dot, R_gau, E_pred_gau, E_pred_dot, C, lhs (= R_dot), rhs (= R_gau + 2 E_pred_gau
        - 2 E_pred_dot - C), residual (lhs - rhs), eq5_gap (E[||H_dot||^2 - <H_Gau,H_dot>]), relative_residual
        (|residual| / |lhs|). ``residual = EQ4_RESIDUAL_FACTOR * eq5_gap`` for any inputs, up to rounding.
    """
    _check_maps(pred=pred, gauss=gauss, dot=dot)
    p, g, d = pred.double(), gauss.double(), dot.double()
    terms = {
        "R_dot": _inner(d - p, d - p).mean(),
        "R_gau": _inner(g - p, g - p).mean(),
        "E_pred_gau": _inner(p, g).mean(),
        "E_pred_dot": _inner(p, d).mean(),
        "C": _inner(g - d, g - d).mean(),
        "eq5_gap": eq5_gap_per_joint(g, d).sum(dim=1).mean(),
    }
    terms["lhs"] = terms["R_dot"]
    terms["rhs"] = terms["R_gau"] + 2 * terms["E_pred_gau"] - 2 * terms["E_pred_dot"] - terms["C"]
    terms["residual"] = terms["lhs"] - terms["rhs"]
    out = {key: float(value) for key, value in terms.items()}
    out["relative_residual"] = abs(out["residual"]) / max(abs(out["lhs"]), torch.finfo(torch.float64).tiny)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Where eq. 5 breaks: a Gaussian centred on the exact sub-pixel joint
# ---------------------------------------------------------------------------------------------------------------


def eq5_violation(
    joints: torch.Tensor, heatmap_hw: tuple[int, int], sigma: float = 2.0, visibility: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 5 gap ||H_dot||^2 - <H_Gau, H_dot> per joint when H_Gau is the sub-pixel-centred Gaussian.

    Measured on the heatmaps (:func:`subpixel_gaussian_heatmaps` against :func:`hdm.targets.dot_heatmaps`); equals
    1 - exp(-d^2 / 2σ^2) (:func:`eq5_violation_closed_form`) for joints that count, 0 otherwise. The residual of
    eq. 4 is ``EQ4_RESIDUAL_FACTOR`` times its expectation (summed over joints).

    Args:
        joints: (B, K, 2) heatmap px, (x, y). heatmap_hw: (H, W). sigma: heatmap px.
        visibility: (B, K) or None (all labelled).
    Returns:
        (B, K) float64, dimensionless, in [0, 1).
    """
    joints = joints.double()
    if visibility is None:
        visibility = torch.ones(joints.shape[:2], dtype=joints.dtype, device=joints.device)
    gauss, _ = subpixel_gaussian_heatmaps(joints, visibility, heatmap_hw, sigma)
    dot, _ = dot_heatmaps(joints, visibility, heatmap_hw)
    return eq5_gap_per_joint(gauss, dot)


def eq5_violation_closed_form(joints: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """1 - exp(-d^2 / 2σ^2), d = distance from each joint to its rounded pixel (ignores visibility and borders).

    Args:
        joints: (B, K, 2) heatmap px. sigma: heatmap px.
    Returns:
        (B, K) float64.
    """
    joints = joints.double()
    d2 = ((joints - rounded_pixels(joints).double()) ** 2).sum(dim=-1)
    return -torch.expm1(-d2 / (2 * sigma**2))


def uniform_offset_eq5_violation(sigma: float = 2.0) -> float:
    """E[1 - exp(-d^2/2σ^2)] for a joint uniformly distributed over its pixel (offset ~ U[-1/2, 1/2]^2).

    Closed form: 1 - (σ √(2π) erf(1 / (2√2 σ)))^2, since the x and y offsets are independent. The reference value
    for datasets whose joints land at continuous positions in the heatmap (e.g. image px / 4 after an affine crop).
    Args:
        sigma: heatmap px.
    """
    one_axis = sigma * math.sqrt(2 * math.pi) * math.erf(1 / (2 * math.sqrt(2) * sigma))
    return 1 - one_axis**2


def dataset_eq5_violation(
    joints: torch.Tensor, visibility: torch.Tensor, heatmap_hw: tuple[int, int], sigma: float = 2.0
) -> dict[str, float]:
    """Expectation of the eq. 5 gap (and of eq. 4's residual) over a dataset's joints, sub-pixel-centred Gaussians.

    Args:
        joints: (B, K, 2) heatmap px, (x, y). visibility: (B, K). heatmap_hw: (H, W). sigma: heatmap px.
    Returns:
        dict of floats: counted_joints (joints with target weight 1), mean_gap_per_joint (over counted joints),
        max_gap, eq4_residual_per_image (EQ4_RESIDUAL_FACTOR * mean over images of Σ_k gap, the residual of eq. 4
        in the units of R, i.e. summed squares per image), uniform_reference (:func:`uniform_offset_eq5_violation`).
    """
    gap = eq5_violation(joints, heatmap_hw, sigma, visibility)
    counted = target_weight(joints.double(), visibility, heatmap_hw) > 0
    n = int(counted.sum())
    return {
        "counted_joints": n,
        "mean_gap_per_joint": float(gap[counted].mean()) if n else float("nan"),
        "max_gap": float(gap.max()) if gap.numel() else float("nan"),
        "eq4_residual_per_image": float(EQ4_RESIDUAL_FACTOR * gap.sum(dim=1).mean()),
        "uniform_reference": uniform_offset_eq5_violation(sigma),
    }


def offset_grid(steps: int = 11, max_offset: float = 0.5) -> torch.Tensor:
    """Sub-pixel offsets (δx, δy) on a regular grid over [0, max_offset]^2: (steps^2, 2) float64, heatmap px."""
    axis = torch.linspace(0, max_offset, steps, dtype=torch.float64)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


def eq5_violation_table(
    offsets: torch.Tensor, sigmas: Sequence[float] = (1.0, 2.0, 3.0), heatmap_hw: tuple[int, int] = (64, 48)
) -> pd.DataFrame:
    """Tidy table of the eq. 5 gap for joints at a pixel centre + offset, one row per (sigma, offset).

    The joint is placed at the heatmap's central pixel plus the offset, far from the borders.
    Args:
        offsets: (N, 2) heatmap px, (δx, δy). sigmas: Gaussian widths, heatmap px. heatmap_hw: (H, W).
    Returns:
        DataFrame with columns sigma, offset_x, offset_y, distance (joint to its rounded pixel, px), eq5_gap
        (measured on heatmaps), eq5_gap_closed_form (1 - exp(-d^2/2σ^2)), eq4_residual (EQ4_RESIDUAL_FACTOR * gap).
    """
    offsets = torch.as_tensor(offsets, dtype=torch.float64)
    if offsets.ndim != 2 or offsets.shape[-1] != 2:
        raise ValueError(f"offsets must have shape (N, 2) in heatmap px, got {tuple(offsets.shape)}")
    height, width = heatmap_hw
    joints = (offsets + torch.tensor([width // 2, height // 2], dtype=torch.float64)).unsqueeze(1)  # (N, 1, 2)
    distance = (joints - rounded_pixels(joints).double()).norm(dim=-1)[:, 0]
    frames = []
    for sigma in sigmas:
        gap = eq5_violation(joints, heatmap_hw, sigma)[:, 0]
        frames.append(
            pd.DataFrame(
                {
                    "sigma": float(sigma),
                    "offset_x": offsets[:, 0].numpy(),
                    "offset_y": offsets[:, 1].numpy(),
                    "distance": distance.numpy(),
                    "eq5_gap": gap.numpy(),
                    "eq5_gap_closed_form": eq5_violation_closed_form(joints, sigma)[:, 0].numpy(),
                    "eq4_residual": (EQ4_RESIDUAL_FACTOR * gap).numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
