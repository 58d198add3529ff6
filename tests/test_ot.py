"""Exact and entropic OT (hdm.ot) against POT, duality, and finite differences."""

import numpy as np
import ot as pot
import pytest
import torch

from hdm import ot
from hdm.targets import demanders


def _random_problem(rng, n, p, m, zero_frac=0.0):
    supply = rng.random((n, p)) * (rng.random((n, p)) >= zero_frac)
    supply[:, 0] += 1e-3  # never an all-zero row
    supply /= supply.sum(1, keepdims=True)
    demand = rng.random((n, m))
    demand /= demand.sum(1, keepdims=True)
    cost = rng.random((n, p, m))
    return supply, demand, cost


def _pot_values(supply, demand, cost):
    return np.array([pot.emd2(supply[i], demand[i], cost[i]) for i in range(len(supply))])


def _check_dual(supply, demand, cost, value, a, b, atol=1e-9):
    """Feasibility a_n + b_m <= C_nm and zero duality gap."""
    a, b = a.reshape(len(a), -1), b
    slack = cost - a[:, :, None] - b[:, None, :]
    assert slack.min() >= -atol, f"dual infeasible by {-slack.min():.3g}"
    dual_value = (a * supply).sum(1) + (b * demand).sum(1)
    np.testing.assert_allclose(dual_value, value, atol=1e-9)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("zero_frac", [0.0, 0.7])
def test_emd_matches_pot_on_random_problems(m, zero_frac):
    rng = np.random.default_rng(m * 10 + int(zero_frac * 10))
    supply, demand, cost = _random_problem(rng, 40, 37, m, zero_frac)
    value, a, b = ot.emd(*(torch.from_numpy(x) for x in (supply, demand, cost)))
    np.testing.assert_allclose(value.numpy(), _pot_values(supply, demand, cost), atol=1e-6, rtol=0)
    _check_dual(supply, demand, cost, value.numpy(), a.numpy(), b.numpy())


def test_emd_complementary_slackness_with_pot_plan():
    """Wherever POT's optimal plan moves mass, our potentials are tight (a_n + b_m = C_nm)."""
    rng = np.random.default_rng(1)
    supply, demand, cost = _random_problem(rng, 20, 25, 4)
    _, a, b = ot.emd(*(torch.from_numpy(x) for x in (supply, demand, cost)))
    for i in range(20):
        plan = pot.emd(supply[i], demand[i], cost[i])
        slack = cost[i] - a[i].numpy()[:, None] - b[i].numpy()[None, :]
        assert np.abs(slack[plan > 1e-12]).max() < 1e-9


def _grid_problems(rng, n, height, width, joints):
    joints = torch.as_tensor(joints, dtype=torch.float64).view(n, 1, 2)
    positions, masses = demanders(joints, (height, width))
    return positions[:, 0], masses[:, 0]


ADVERSARIAL = {
    "one_pixel": lambda rng, h, w: np.eye(h * w)[rng.integers(0, h * w)].reshape(h, w),
    "on_demanders": None,  # filled in the test: all mass on the demander pixels
    "uniform_ties": lambda rng, h, w: np.ones((h, w)),
    "two_far_pixels": lambda rng, h, w: np.pad(np.ones((1, 1)), ((0, h - 1), (0, w - 1))) + np.pad(
        np.ones((1, 1)), ((h - 1, 0), (w - 1, 0))
    ),
    "sparse": lambda rng, h, w: rng.random((h, w)) * (rng.random((h, w)) > 0.9) + 0.0,
    "blob": lambda rng, h, w: np.exp(-((np.arange(w)[None] - w / 3) ** 2 + (np.arange(h)[:, None] - h / 2) ** 2) / 8),
}


@pytest.mark.parametrize("kind", sorted(ADVERSARIAL))
@pytest.mark.parametrize(
    "joint",
    [(3.3, 4.6), (5.0, 2.0), (0.0, 0.0), (10.0, 12.0), (10.5, 0.0), (0.2, 12.0), (7.5, 6.5)],
    ids=["subpixel", "pixel_centre", "corner", "far_corner", "top_border", "left_border", "ties"],
)
def test_emd_grid_matches_pot_on_adversarial_problems(kind, joint):
    rng = np.random.default_rng(7)
    height, width = 13, 11
    positions, masses = _grid_problems(rng, 1, height, width, [joint])
    if kind == "on_demanders":
        heat = np.zeros((height, width))
        for (x, y), mass in zip(positions[0].tolist(), masses[0].tolist()):
            heat[y, x] += mass
        heat[positions[0, 0, 1], positions[0, 0, 0]] += 1e-3
    else:
        heat = ADVERSARIAL[kind](rng, height, width).astype(np.float64)
    if heat.sum() == 0:
        heat[0, 0] = 1.0
    heat = heat / heat.sum()
    supply = torch.from_numpy(heat)[None]
    value, a, b = ot.emd_grid(supply, positions, masses)
    cost = ot.grid_cost(height, width, positions).numpy()
    expected = pot.emd2(heat.ravel(), masses[0].numpy(), cost[0])
    assert abs(value.item() - expected) < 1e-6
    _check_dual(heat.reshape(1, -1), masses.numpy(), cost, value.numpy(), a.numpy(), b.numpy())


@pytest.mark.parametrize("cost_name", ["euclidean", "sqeuclidean"])
def test_emd_grid_agrees_with_dense_emd_and_pot_on_a_batch(cost_name):
    rng = np.random.default_rng(3)
    n, height, width = 64, 16, 12
    joints = rng.random((n, 2)) * [width - 1, height - 1]
    positions, masses = _grid_problems(rng, n, height, width, joints)
    heat = rng.random((n, height, width)) ** 6
    heat /= heat.sum((1, 2), keepdims=True)
    value, a, b = ot.emd_grid(torch.from_numpy(heat), positions, masses, cost=cost_name)
    cost = ot.grid_cost(height, width, positions, cost=cost_name)
    dense_value, dense_a, _ = ot.emd(torch.from_numpy(heat).view(n, -1), masses, cost)
    np.testing.assert_allclose(value.numpy(), dense_value.numpy(), atol=1e-10)
    np.testing.assert_allclose(value.numpy(), _pot_values(heat.reshape(n, -1), masses.numpy(), cost.numpy()), atol=1e-6)
    _check_dual(heat.reshape(n, -1), masses.numpy(), cost.numpy(), value.numpy(), a.numpy(), b.numpy())


def test_identical_distributions_cost_zero_and_diracs_cost_their_distance():
    height, width = 9, 7
    positions = torch.tensor([[[2, 3]], [[6, 8]]])
    masses = torch.ones(2, 1, dtype=torch.float64)
    heat = torch.zeros(2, height, width, dtype=torch.float64)
    heat[0, 3, 2] = 1.0  # on the demander
    heat[1, 0, 0] = 1.0  # a Dirac at (0, 0), demander at (6, 8): distance 10
    value, _, _ = ot.emd_grid(heat, positions, masses)
    assert value[0].item() == 0.0
    assert value[1].item() == pytest.approx(10.0, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_emd_keeps_dtype_and_gradient_is_the_potential(dtype):
    rng = np.random.default_rng(5)
    supply, demand, cost = _random_problem(rng, 4, 10, 3)
    s = torch.tensor(supply, dtype=dtype, requires_grad=True)
    d = torch.tensor(demand, dtype=dtype, requires_grad=True)
    value, a, b = ot.emd(s, d, torch.tensor(cost, dtype=dtype))
    assert value.dtype == a.dtype == b.dtype == dtype
    weights = torch.arange(1, 5, dtype=dtype)
    (value * weights).sum().backward()
    torch.testing.assert_close(s.grad, weights[:, None] * a)
    torch.testing.assert_close(d.grad, weights[:, None] * b)


def test_gradient_matches_finite_differences_on_the_simplex():
    """Directional derivative along s + t (e_i - e_j) (stays on the simplex) equals a_i - a_j."""
    rng = np.random.default_rng(11)
    height, width = 10, 8
    joints = rng.random((6, 2)) * [width - 1, height - 1]
    positions, masses = _grid_problems(rng, 6, height, width, joints)
    heat = rng.random((6, height, width)) + 0.05
    heat /= heat.sum((1, 2), keepdims=True)
    heat_t = torch.from_numpy(heat)
    _, a, _ = ot.emd_grid(heat_t, positions, masses)
    step = 1e-7
    for k in range(6):
        for _ in range(5):
            i, j = rng.choice(height * width, 2, replace=False)
            direction = torch.zeros(height * width, dtype=torch.float64)
            direction[i], direction[j] = 1.0, -1.0
            direction = direction.view(height, width)
            plus, _, _ = ot.emd_grid((heat_t[k] + step * direction)[None], positions[k : k + 1], masses[k : k + 1])
            minus, _, _ = ot.emd_grid((heat_t[k] - step * direction)[None], positions[k : k + 1], masses[k : k + 1])
            numeric = (plus - minus).item() / (2 * step)
            analytic = (a[k] * direction).sum().item()
            assert numeric == pytest.approx(analytic, abs=1e-5)


def test_sinkhorn_approaches_exact_as_eps_shrinks():
    rng = np.random.default_rng(2)
    n, height, width = 8, 12, 10
    joints = rng.random((n, 2)) * [width - 1, height - 1]
    positions, masses = _grid_problems(rng, n, height, width, joints)
    heat = rng.random((n, height, width)) ** 3
    heat /= heat.sum((1, 2), keepdims=True)
    supply = torch.from_numpy(heat).view(n, -1)
    cost = ot.grid_cost(height, width, positions)
    exact, _, _ = ot.emd(supply, masses, cost)
    errors = []
    for eps in (0.5, 0.05, 0.005):
        value, f, g = ot.sinkhorn(supply, masses, cost, eps=eps, max_iter=5000, tol=1e-9)
        errors.append((value - exact).abs().max().item())
        reference = np.array(
            [pot.sinkhorn2(heat[i].ravel(), masses[i].numpy(), cost[i].numpy(), eps, method="sinkhorn_log",
                           numItermax=5000, stopThr=1e-10) for i in range(n)]
        )
        assert value.numpy() == pytest.approx(reference, abs=1e-4)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02


def test_sinkhorn_gradient_is_its_potential():
    rng = np.random.default_rng(4)
    supply, demand, cost = _random_problem(rng, 3, 12, 4)
    s = torch.tensor(supply, requires_grad=True)
    value, f, _ = ot.sinkhorn(s, torch.tensor(demand), torch.tensor(cost), eps=0.1)
    value.sum().backward()
    torch.testing.assert_close(s.grad, f)


def test_bad_inputs_raise_clear_errors():
    s = torch.full((2, 4), 0.25, dtype=torch.float64)
    d = torch.full((2, 2), 0.5, dtype=torch.float64)
    c = torch.rand(2, 4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\(N, P\)"):
        ot.emd(s[0], d, c)
    with pytest.raises(ValueError, match="shapes disagree"):
        ot.emd(s, d, c[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        ot.emd(torch.full_like(s, float("nan")), d, c)
    with pytest.raises(ValueError, match="negative"):
        ot.emd(s - 0.5, d, c)
    with pytest.raises(ValueError, match="unbalanced"):
        ot.emd(s, d * 2, c)
    with pytest.raises(ValueError, match="inside|pixels"):
        ot.emd_grid(s.view(2, 2, 2), torch.tensor([[[5, 0]], [[0, 0]]]), torch.ones(2, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="integer"):
        ot.emd_grid(s.view(2, 2, 2), torch.zeros(2, 1, 2), torch.ones(2, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="cost must be"):
        ot.emd_grid(s.view(2, 2, 2), torch.zeros(2, 1, 2, dtype=torch.long), torch.ones(2, 1), cost="l1")


SPLIT_ITEM_CYCLE = """
import sys
import numpy as np
from hdm import _ssp
from hdm.ot import _offset_cost_table

case = np.load(sys.argv[1])
heat, sigma = case["heat"].reshape(1, -1), case["sigma"].reshape(1, -1)
value, b, grad = np.empty(1, heat.dtype), np.empty((1, 4), heat.dtype), np.empty((1, heat.shape[1]), heat.dtype)
height, width = case["heat"].shape
table = _offset_cost_table((height - 1) ** 2 + (width - 1) ** 2, "euclidean")
_ssp.solve_relu_squares(heat, sigma, float(case["eps"]), np.array([0]), width, case["corner"][None],
                        case["demand"][None], table, value, b, grad, 1)
print(repr(float(value[0])))
"""


def test_the_fused_relu_solver_finishes_where_a_split_item_once_cycled():
    """A real validation heatmap (a softmax-trained model's map, long scale) on which the solver once looped for
    ever: its shortest path moved one split item through a cell holding a rounding residual of it, refilling that
    residual on every pass. Run in a subprocess so that a regression fails on the timeout instead of hanging."""
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).parent / "data" / "solver" / "split_item_cycle.npz"
    done = subprocess.run([sys.executable, "-c", SPLIT_ITEM_CYCLE, str(path)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    case = np.load(path)
    heat, sigma, eps = case["heat"].astype(np.float64), case["sigma"].astype(np.float64), float(case["eps"])
    supply = ((np.maximum(heat, 0) + eps * sigma) / (np.maximum(heat, 0).sum() + eps)).ravel()
    corners = torch.as_tensor(case["corner"]) + torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]])
    cost = ot.grid_cost(*heat.shape, corners[None])[0].numpy()
    demand = case["demand"] / case["demand"].sum() * supply.sum()
    assert float(done.stdout) == pytest.approx(pot.emd2(supply, demand, cost), rel=1e-6)


PARALLEL_KERNELS = """
import numba, torch
from hdm import ot
from hdm.loss import HDMLoss

assert numba.get_num_threads() == 2, numba.get_num_threads()
g = torch.Generator().manual_seed(0)
n, height, width = 40, 16, 12
supply = torch.rand(n, height, width, generator=g, dtype=torch.float64)
supply /= supply.sum((1, 2), keepdim=True)
demand = torch.rand(n, 4, generator=g, dtype=torch.float64)
demand /= demand.sum(1, keepdim=True)
corner = torch.stack([torch.randint(0, width - 1, (n,), generator=g), torch.randint(0, height - 1, (n,), generator=g)], -1)
square = corner[:, None] + torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]])
scattered = torch.stack([torch.randint(0, width, (n, 4), generator=g), torch.randint(0, height, (n, 4), generator=g)], -1)
flat = supply.reshape(n, -1)
cost = torch.rand(n, height * width, 4, generator=g, dtype=torch.float64)
heat = torch.randn(4, 10, height, width, generator=g, dtype=torch.float64) - 0.5
joints = torch.rand(4, 10, 2, generator=g, dtype=torch.float64) * torch.tensor([width - 1.0, height - 1.0])
weight = torch.ones(4, 10, dtype=torch.float64)


def solve():
    pred = heat.clone().requires_grad_(True)
    loss = HDMLoss()(pred, joints, weight)  # the fused relu kernel
    loss.backward()
    return [*ot.emd_grid(supply, square, demand), *ot.emd_grid(supply, scattered, demand), *ot.emd(flat, demand, cost),
            loss.detach(), pred.grad]


numba.set_num_threads(1)
one = solve()
numba.set_num_threads(2)
two = solve()
assert all(torch.equal(a, b) for a, b in zip(one, two)), [float((a - b).abs().max()) for a, b in zip(one, two)]
print("same")
"""


def test_the_parallel_kernels_give_the_same_numbers_on_one_and_two_threads():
    """The test processes run Numba on one thread (tests/conftest.py: two pytest-xdist workers on two cores would
    otherwise spin-wait on each other); here the parallel kernels run on two, in a process of their own, and every
    value, potential and gradient equals the one-thread result bit for bit."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", PARALLEL_KERNELS], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-3000:]
