"""Compiled kernels of the exact solver in :mod:`hdm.ot` (numba). Internal: call :func:`hdm.ot.emd` instead.

The problem, for one instance with n items (pixels, or blocks of pixels) of mass s and M demanders of mass d
(Σs = Σd, M small):

    min_x  Σ_km x_km C_km   s.t.  x >= 0,  Σ_m x_km = s_k,  Σ_k x_km = d_m

**Successive shortest paths over the demanders** (:func:`_solve_items`). Any potentials b (M,) define a
feasible start: every item sends its mass to a demander minimising C_km - b_m (its "cell"). Cells then hold
too much or too little mass, and a cell in excess sends the surplus to a cell in deficit along a shortest path
of the M-node graph whose arc i -> j costs min over items k of cell i of (C_kj - b_j) - (C_ki - b_i) >= 0.
Potentials rise by the Dijkstra distances (capped at the target's), which keeps every used pair tight
(a_k + b_m = C_km) and every other pair feasible; the moved item is the minimiser on each path arc. At the end
``a_k = min_m (C_km - b_m)`` for every item, so (a, b) is an optimal dual pair: the solver is exact for any
start, and a start close to the optimum only makes it faster (few items change cell).

- Each arc (i, j) keeps a min-heap of cell-i items keyed by C_kj - C_ki (independent of b). With a warm start
  only *candidates* are kept: items within ``delta`` (reduced cost) of another cell. ``bound[arc]`` is a lower
  bound on the keys of the cell's other items, used as the arc's cost when its heap is empty; when a shortest
  path needs such an arc, its heap is rebuilt from a scan of the cell up to a wider limit (which makes the bound
  exact) and the search is repeated, so exactness never depends on ``delta``. At the pixel level the start also
  lists the items within a wider ``WIDE`` of another cell; a rebuild whose limit stays within it scans the list
  (a few hundred items) instead of every pixel.
- An item that changes cell is pushed to the heaps of its new cell's arcs; entries of items that left a cell
  are dropped lazily when they reach the top. Items split between cells (at most a few) keep their parts in
  ``part``.

**Unit squares on the pixel grid** (:func:`solve_grid`). For the loss, the demanders are the 4 pixels around a
sub-pixel joint. Starting from b = 0 about 2/3 of the pixels would change cell (the cell boundaries are
hyperbolas whose far branches rotate as b changes), so the potentials come from a coarse-to-fine chain of
smaller problems: a sum pyramid of the heatmap on a lattice of 2^k x 2^k blocks aligned with the square (so a
block never straddles a boundary of the b = 0 cells), and levels made of fine blocks near the square and coarse
blocks far away (:data:`LEVELS`). The coarsest level is solved from b = 0, each finer level starts from the
potentials of the previous one, and the pixel level (exact costs) from those of level 0: a few dozen items
change cell per level. Block costs are the mean cost of the block's pixels; they only steer the start. All
block tables are translation invariant and cached per heatmap size.

**What the structure does not buy** (measured on the loss's heatmap families, see
``benchmarks/_ssp_profile.py``): no two pixel offsets of a 64x48 map have the same cost vector, even up to a
constant (which would leave their cells equal for every b), so exact aggregation of pixels merges nothing; and
the bound |b_i - b_j| <= |q_i - q_j| that optimal potentials satisfy leaves every pixel movable (a median of
1600-1800 of the 3072 pixels change cell between b = 0 and the optimum, whose differences are ~0.6 px). Blocks
certified to lie in one cell by exact per-block key bounds (an adaptive, exact refinement instead of the fixed
levels) were exact but at best as fast and up to 1.7x slower: more SSP iterations than the fixed chain. Holding
such certified blocks whole at the pixel level only (their mass frozen in their cell, the potentials capped by
their key bounds) left 460-1100 pixel items per problem and was 15-25 % slower than the vectorised pass over
all 3072 pixels. Mass-weighted block costs at the finest
start level did not pay for their pass either. Three levels (:data:`LEVELS`) beat four by 11-23 %.

**The fused loss** (:func:`solve_relu_squares`): the relu suppliers of :class:`hdm.loss.HDMLoss` are built from
the heatmap and its softmax in the kernel's pass, and the gradient w.r.t. the heatmap is written right after the
solve, so the loss needs no torch pass over (N, H, W) float64 copies.

Notes on speed (numba): the hot loops call no helper that takes arrays (numba does not always prune the
reference counting of such calls, and atomic reference counts cost more than a heap operation); indices that
could be negative are avoided or cast to unsigned where a loop must vectorise; sums use ``fastmath`` reassociation
only (deterministic for a given build).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Excess below this (relative to the total mass) counts as zero.
MASS_TOL = 1e-13
NONE = -1  # owner of an item without mass
SPLIT = -2  # owner of an item whose mass is split between cells (see ``part``)
_REASSOC = {"reassoc", "nsz"}  # fastmath flags for sums: order only

# Levels of the unit-square start, finest first. Each is a list of tiers (ring limit, block size): pixels at
# Chebyshev ring m = max(u, v) < limit from the square (u, v = 0 next to it) are grouped in blocks of that size.
# Limits are multiples of the next block size so that blocks of one level tile the plane exactly.
_ALL = 1 << 20
LEVELS = (
    ((4, 1), (8, 2), (_ALL, 4)),
    ((2, 1), (4, 2), (8, 4), (_ALL, 8)),
    ((0, 1), (0, 2), (0, 4), (16, 8), (_ALL, 16)),
)
# For peaked maps (more than PEAKED of the mass within the 8 x 8 pixels around the square, e.g. a trained
# network's sharp blob) the chain skips the middle level: its coarsest level resolves the blob itself.
LEVELS_PEAKED = (LEVELS[0], ((2, 1), (4, 2), (8, 4), (16, 8), (_ALL, 16)))
PEAKED = 0.4
N_POOL = 5  # pyramid levels: pixels, 2x2, 4x4, 8x8, 16x16 blocks
# Candidate width (reduced cost, heatmap px) at the pixel level and at each coarse level but the coarsest.
DELTAS = (0.005, 0.03, 0.05)
WIDE = 0.02  # pixel level: items within this of another cell are listed, so that most heap rebuilds scan only them


# ---------------------------------------------------------------------------------------------- reductions
@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _sum(x, n):
    total = 0.0
    for k in range(n):
        total += x[k]
    return total


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _dot(x, y, n):
    total = 0.0
    for k in range(n):
        total += x[k] * y[k]
    return total


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _cell_masses(mass, owner, n, out):
    """out[m] = mass of the items owned by m (items without an owner have no mass). For M = 4 the loop keeps
    three masked sums and the total (LLVM vectorises that, not four masked sums)."""
    if out.shape[0] == 4:
        m0 = m1 = m2 = total = 0.0
        for k in range(n):
            o = owner[k]
            s = mass[k]
            total += s
            m0 += s if o == 0 else 0.0
            m1 += s if o == 1 else 0.0
            m2 += s if o == 2 else 0.0
        out[0], out[1], out[2], out[3] = m0, m1, m2, total - m0 - m1 - m2
    else:
        for m in range(out.shape[0]):
            total = 0.0
            for k in range(n):
                total += mass[k] if owner[k] == m else 0.0
            out[m] = total


# ---------------------------------------------------------------------------------------------- heaps
@njit(cache=True, error_model="numpy")
def _sift_down(heap_key, heap_idx, arc, pos, size, key, item):
    """Place (key, item) at ``pos`` of row ``arc``'s heap of ``size`` entries and sift it down to its place."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and heap_key[arc, child + 1] < heap_key[arc, child]:
            child += 1
        if heap_key[arc, child] >= key:
            break
        heap_key[arc, pos] = heap_key[arc, child]
        heap_idx[arc, pos] = heap_idx[arc, child]
        pos = child
    heap_key[arc, pos] = key
    heap_idx[arc, pos] = item


@njit(cache=True, error_model="numpy")
def _heapify(heap_key, heap_idx, arc, size):
    """Min-heap order on row ``arc`` (keys heap_key, items heap_idx) of its first ``size`` entries."""
    for start in range(size // 2 - 1, -1, -1):
        _sift_down(heap_key, heap_idx, arc, start, size, heap_key[arc, start], heap_idx[arc, start])


@njit(cache=True, error_model="numpy")
def _compact(heap_key, heap_idx, arc, size, owner, part, cell):
    """Drop the entries of items no longer in ``cell`` and duplicates from a full heap (rare); new size."""
    seen = np.zeros(owner.shape[0], np.bool_)
    keep = 0
    for t in range(size):
        k = heap_idx[arc, t]
        o = owner[k]
        if (o == cell or (o == SPLIT and part[k, cell] > 0.0)) and not seen[k]:
            seen[k] = True
            heap_key[arc, keep] = heap_key[arc, t]
            heap_idx[arc, keep] = k
            keep += 1
    _heapify(heap_key, heap_idx, arc, keep)
    return keep


@njit(cache=True, error_model="numpy")
def _rebuild(cost, n, owner, part, heap_key, heap_idx, heap_size, arc, i, j, hi, listed, n_listed):
    """Rebuild the heap of arc (i, j) from the items of cell i with key C_j - C_i < hi; returns the smallest key
    >= hi (the arc's new bound). Scans items 0..n-1, or only listed[:n_listed] if n_listed >= 0. Rebuilding rather
    than appending also drops stale entries and duplicates, and picks up items whose candidate test and bound
    disagreed by a rounding error."""
    size = 0
    beyond = np.inf
    for t in range(n if n_listed < 0 else n_listed):
        k = t if n_listed < 0 else listed[t]
        o = owner[k]
        if o == i or (o == SPLIT and part[k, i] > 0.0):
            key = cost[j, k] - cost[i, k]
            if key >= hi:
                beyond = min(beyond, key)
            else:
                heap_key[arc, size] = key
                heap_idx[arc, size] = k
                size += 1
    _heapify(heap_key, heap_idx, arc, size)
    heap_size[arc] = size
    return beyond


# ---------------------------------------------------------------------------------------------- the solver
@njit(cache=True, error_model="numpy")
def _assign(cost, mass, n, bb, delta, owner, near):
    """owner[k] = argmin_m cost[m, k] - bb[m] (NONE without mass); near[k] = number of other demanders within
    delta of that minimum (0 without mass). bb is -inf for inactive demanders. M = 4 is unrolled (vectorises)."""
    n_dem = cost.shape[0]
    if n_dem == 4:
        b0, b1, b2, b3 = bb[0], bb[1], bb[2], bb[3]
        for k in range(n):
            v0 = cost[0, k] - b0
            v1 = cost[1, k] - b1
            v2 = cost[2, k] - b2
            v3 = cost[3, k] - b3
            lo01 = min(v0, v1)
            lo23 = min(v2, v3)
            i01 = np.int8(0) if v0 <= v1 else np.int8(1)
            i23 = np.int8(2) if v2 <= v3 else np.int8(3)
            has_mass = mass[k] > 0.0
            owner[k] = (i01 if lo01 <= lo23 else i23) if has_mass else np.int8(NONE)
            lim = min(lo01, lo23) + delta
            count = np.int8((v0 < lim) + (v1 < lim) + (v2 < lim) + (v3 < lim) - 1)
            near[k] = count if has_mass else np.int8(0)
    else:
        for k in range(n):
            vmin = np.inf
            best = 0
            for m in range(n_dem):
                v = cost[m, k] - bb[m]
                if v < vmin:
                    vmin = v
                    best = m
            count = -1
            for m in range(n_dem):
                count += cost[m, k] - bb[m] < vmin + delta
            owner[k] = best if mass[k] > 0.0 else NONE
            near[k] = min(count, 127) if mass[k] > 0.0 else 0


@njit(cache=True)
def _workspace(n_items, n_dem):
    """Scratch of :func:`_solve_items` for up to n_items items (reused across problems)."""
    n_arcs = n_dem * n_dem
    return (
        np.empty(n_items, np.int8),  # owner
        np.empty((n_items, n_dem)),  # part: mass of a split item per cell
        np.zeros((n_items + 7) // 8 * 8, np.int8),  # near (scanned 8 bytes at a time)
        np.empty((n_arcs, n_items + 8)),  # heap keys, one row per arc
        np.empty((n_arcs, n_items + 8), np.int64),  # heap items
        np.empty(n_arcs, np.int64),  # heap sizes
        np.empty((3, n_arcs)),  # bound, rebuild width, near-list limit per arc
        np.empty(n_items, np.int64),  # the near list: items within ``wide`` of another cell at the start
        np.empty((3, n_dem)),  # bb, excess, dist
        np.empty((6, n_dem), np.int64),  # active, pred, pred_item, path_item, path_from, path_to
    )


@njit(cache=True, error_model="numpy")
def _solve_items(cost, mass, n, demand, b, delta, wide, tol, ws):
    """Exact OT from items 0..n-1 (cost (M, >=n), mass (>=n,)) to M demanders, warm-started at potentials b.

    On return b (M,) holds optimal potentials of the active demanders (demand > tol; others are untouched) and
    ws[0] / ws[1] the plan (owner, part). delta: start candidates' width (inf: every item is a candidate);
    wide >= delta: items within wide of another cell at the start are listed, and heap rebuilds that stay
    within wide scan that list instead of every item.
    """
    owner, part, near, heap_key, heap_idx, heap_size, arc_f, listed, small, ismall = ws
    n_dem = cost.shape[0]
    bound = arc_f[0]
    width = arc_f[1]
    limit = arc_f[2]
    bb = small[0]
    excess = small[1]
    dist = small[2]
    active = ismall[0]
    pred = ismall[1]
    pred_item = ismall[2]
    path_item = ismall[3]
    path_from = ismall[4]
    path_to = ismall[5]  # also the "settled" flags of Dijkstra
    n_act = 0
    for m in range(n_dem):
        active[m] = demand[m] > tol
        n_act += active[m]
        bb[m] = b[m] if active[m] else -np.inf
    if n_act > 1:  # (no early return: numba prunes reference counts only in single-exit functions)
        # Start: every item to its cheapest demander at b.
        wide = max(wide, delta)
        _assign(cost, mass, n, bb, wide, owner, near)
        _cell_masses(mass, owner, n, excess)
        for m in range(n_dem):
            excess[m] = excess[m] - demand[m] if active[m] else 0.0
        for i in range(n_dem):
            for j in range(n_dem):
                arc = i * n_dem + j
                heap_size[arc] = 0
                # non-candidates have C_j - C_i >= this (up to rounding, which the rebuilds absorb)
                usable = active[i] and active[j] and i != j
                bound[arc] = delta + bb[j] - bb[i] if usable else np.inf
                width[arc] = max(delta, 1e-3)
                # unlisted items have C_j - C_i >= wide + bb[j] - bb[i] (a margin for rounding)
                limit[arc] = wide + bb[j] - bb[i] - 1e-9 if usable and wide < np.inf else -np.inf
        # Listed items (near > 0: within wide of another cell) and the candidates among them (within delta) to
        # the heaps of their arcs; near is scanned 8 bytes at a time.
        n_listed = 0
        words = near.view(np.uint64)
        for w in range((n + 7) // 8):
            if words[w] == 0:
                continue
            for k in range(8 * w, min(8 * w + 8, n)):
                if near[k] == 0:
                    continue
                listed[n_listed] = k
                n_listed += 1
                i = owner[k]
                ci = cost[i, k]
                lim = ci - bb[i] + delta
                for m in range(n_dem):
                    if m != i and cost[m, k] - bb[m] < lim:
                        arc = i * n_dem + m
                        size = heap_size[arc]
                        heap_key[arc, size] = cost[m, k] - ci
                        heap_idx[arc, size] = k
                        heap_size[arc] = size + 1
        for arc in range(n_dem * n_dem):
            if heap_size[arc] > 1:
                _heapify(heap_key, heap_idx, arc, heap_size[arc])

        while True:
            any_excess = False
            for i in range(n_dem):
                any_excess |= active[i] != 0 and excess[i] > tol
            if not any_excess:
                break
            # Dijkstra from all excess cells on reduced arc costs, stopped at the first deficit cell settled.
            for i in range(n_dem):
                dist[i] = 0.0 if (active[i] and excess[i] > tol) else np.inf
                pred[i] = -1
                path_to[i] = 0 if active[i] else 1
            target = -1
            for _ in range(n_dem):
                u = -1
                best = np.inf
                for i in range(n_dem):
                    if path_to[i] == 0 and dist[i] < best:
                        best = dist[i]
                        u = i
                if u < 0:
                    break
                path_to[u] = 1
                if excess[u] < -tol:
                    target = u
                    break
                for v in range(n_dem):
                    if path_to[v] != 0:
                        continue
                    arc = u * n_dem + v
                    size = heap_size[arc]
                    while size > 0:  # drop entries of items that left cell u
                        k = heap_idx[arc, 0]
                        o = owner[k]
                        if o == u or (o == SPLIT and part[k, u] > 0.0):
                            break
                        size -= 1  # pop: the last entry moves to the root and sifts down
                        _sift_down(heap_key, heap_idx, arc, 0, size, heap_key[arc, size], heap_idx[arc, size])
                    heap_size[arc] = size
                    if size > 0:
                        key = heap_key[arc, 0]
                        item = heap_idx[arc, 0]
                    elif bound[arc] < np.inf:
                        key = bound[arc]  # lower bound: the heap is rebuilt if a path uses the arc
                        item = -1
                    else:
                        continue
                    r = key - b[v] + b[u]
                    alt = dist[u] + (r if r > 0.0 else 0.0)
                    if alt < dist[v]:
                        dist[v] = alt
                        pred[v] = u
                        pred_item[v] = item
            if target < 0:
                break  # only rounding-level imbalance is left
            reach = dist[target]
            for i in range(n_dem):
                if active[i]:
                    b[i] += dist[i] if path_to[i] != 0 and dist[i] < reach else reach

            # The path back from the target. An item on two consecutive arcs (i -> u -> j, split between i and
            # u) moves from i to j directly at the same cost: one step, so that its part in u, possibly a rounding
            # residual, neither limits the amount nor is refilled by the move (a path through it would then move
            # that residual again and again without the excess shrinking).
            length = 0
            node = target
            rebuild_from = -1
            while pred[node] >= 0:
                i = pred[node]
                k = pred_item[node]
                if k < 0:
                    rebuild_from = i
                    break
                if length > 0 and path_item[length - 1] == k:
                    path_from[length - 1] = i
                else:
                    path_item[length] = k
                    path_from[length] = i
                    path_to[length] = node
                    length += 1
                node = i
            # its bottleneck (read before anything moves)
            amount = -excess[target]
            for step in range(length):
                k = path_item[step]
                i = path_from[step]
                amount = min(amount, mass[k] if owner[k] == i else part[k, i])
            if rebuild_from >= 0:
                # The path needs items beyond an arc's heap: rebuild it up to a wider limit, then search again
                # (the potentials just set stay feasible: the bound was a lower bound of the true arc cost).
                arc = rebuild_from * n_dem + node
                hi = bound[arc] + width[arc]
                if hi <= limit[arc]:  # every item below hi is listed (items that moved were candidates)
                    beyond = _rebuild(cost, n, owner, part, heap_key, heap_idx, heap_size, arc, rebuild_from, node,
                                      hi, listed, n_listed)
                    bound[arc] = min(beyond, limit[arc])
                else:
                    bound[arc] = _rebuild(cost, n, owner, part, heap_key, heap_idx, heap_size, arc, rebuild_from,
                                          node, hi, listed, -1)
                width[arc] *= 4.0
                continue
            source = node
            amount = min(amount, excess[source])

            for step in range(length):
                k = path_item[step]
                i = path_from[step]
                j = path_to[step]
                o = owner[k]
                if o == i and amount >= mass[k]:
                    owner[k] = j
                    joined = True
                else:
                    if o != SPLIT:
                        for c in range(n_dem):
                            part[k, c] = 0.0
                        part[k, i] = mass[k]
                        owner[k] = SPLIT
                    part[k, i] = max(part[k, i] - amount, 0.0)
                    joined = part[k, j] <= 0.0
                    part[k, j] += amount
                if not joined:
                    continue
                if near[k] == 0:
                    # An unlisted item (found by a full rebuild) leaves its start cell: list it, since the bound
                    # that lets rebuilds scan only the list holds for unlisted items in their start cell alone.
                    near[k] = 1
                    listed[n_listed] = k
                    n_listed += 1
                cj = cost[j, k]  # item k enters cell j: the heaps of the arcs (j, m) must see it
                for m in range(n_dem):
                    if m == j or not active[m]:
                        continue
                    arc = j * n_dem + m
                    key = cost[m, k] - cj
                    if key >= bound[arc]:
                        continue  # found by a rebuild if ever needed
                    size = heap_size[arc]
                    if size == heap_key.shape[1]:
                        size = _compact(heap_key, heap_idx, arc, size, owner, part, j)
                    pos = size
                    while pos > 0:  # sift up
                        parent = (pos - 1) >> 1
                        if heap_key[arc, parent] <= key:
                            break
                        heap_key[arc, pos] = heap_key[arc, parent]
                        heap_idx[arc, pos] = heap_idx[arc, parent]
                        pos = parent
                    heap_key[arc, pos] = key
                    heap_idx[arc, pos] = k
                    heap_size[arc] = size + 1
            excess[target] += amount
            excess[source] -= amount


@njit(cache=True, error_model="numpy")
def _finish(cost, supply, demand, b, tol, a_out, b_out):
    """Dual potentials and value from b: a = c-transform of b over the active demanders (every pixel), b of
    inactive demanders = c-transform of a. Returns <a, s> + <b, d> (= the primal value at the optimum).
    Without any active demander (no mass at all) a = 0, b = 0 and the value is 0."""
    n_dem, n_pix = cost.shape
    n_act = 0
    for m in range(n_dem):
        n_act += demand[m] > tol
    if n_dem == 4:
        b0 = b[0] if demand[0] > tol else -np.inf
        b1 = b[1] if demand[1] > tol else -np.inf
        b2 = b[2] if demand[2] > tol else -np.inf
        b3 = b[3] if demand[3] > tol else -np.inf
        for k in range(n_pix):
            a_out[k] = min(min(cost[0, k] - b0, cost[1, k] - b1), min(cost[2, k] - b2, cost[3, k] - b3))
    else:
        for k in range(n_pix):
            v = np.inf
            for m in range(n_dem):
                if demand[m] > tol:
                    v = min(v, cost[m, k] - b[m])
            a_out[k] = v
    if n_act == 0:
        a_out[:n_pix] = 0.0
    value = _dot(supply, a_out, n_pix)
    for m in range(n_dem):
        if demand[m] > tol:
            b_out[m] = b[m]
            value += demand[m] * b[m]
        elif n_act == 0:
            b_out[m] = 0.0
        else:
            best = np.inf
            for k in range(n_pix):
                best = min(best, cost[m, k] - a_out[k])
            b_out[m] = best
    return value


@njit(cache=True)
def _chunk(n_problems, n_chunks, c):
    return c * n_problems // n_chunks, (c + 1) * n_problems // n_chunks


# ---------------------------------------------------------------------------------------------- dense costs
MAX_DEMANDERS = 127  # cell indices are int8


def _check_demanders(n_dem):
    if n_dem > MAX_DEMANDERS:
        raise ValueError(f"the exact solver takes at most {MAX_DEMANDERS} demanders per problem, got {n_dem}; "
                         "use hdm.ot.sinkhorn for more")


def solve_dense(cost, supply, demand, a_out, b_out, value_out, n_chunks):
    """Batch of dense problems: cost (N, P, M), supply (N, P), demand (N, M), float64, solved from b = 0.

    Writes a_out (N, P), b_out (N, M) and value_out (N,). Problems are split into n_chunks contiguous chunks
    run in parallel, each with its own scratch space.
    """
    _check_demanders(cost.shape[2])
    _solve_dense(cost, supply, demand, a_out, b_out, value_out, n_chunks)


@njit(cache=True, parallel=True)
def _solve_dense(cost, supply, demand, a_out, b_out, value_out, n_chunks):
    n_problems, n_pix, n_dem = cost.shape
    for c in prange(n_chunks):
        cost_t = np.empty((n_dem, n_pix))
        ws = _workspace(n_pix, n_dem)
        b = np.empty(n_dem)
        lo, hi = _chunk(n_problems, n_chunks, c)
        for k in range(lo, hi):
            for n in range(n_pix):
                for m in range(n_dem):
                    cost_t[m, n] = cost[k, n, m]
            tol = MASS_TOL * _sum(supply[k], n_pix)
            b[:] = 0.0
            _solve_items(cost_t, supply[k], n_pix, demand[k], b, np.inf, np.inf, tol, ws)
            value_out[k] = _finish(cost_t, supply[k], demand[k], b, tol, a_out[k], b_out[k])


@njit(cache=True, parallel=True)
def _solve_offsets(supply, width, positions, demand, table, a_out, b_out, value_out, n_chunks):
    """Grid problems with demanders anywhere (see :func:`solve_grid`), solved from b = 0."""
    n_problems, n_pix = supply.shape
    n_dem = positions.shape[1]
    for c in prange(n_chunks):
        cost = np.empty((n_dem, n_pix))
        ws = _workspace(n_pix, n_dem)
        b = np.empty(n_dem)
        lo, hi = _chunk(n_problems, n_chunks, c)
        for k in range(lo, hi):
            for m in range(n_dem):
                for n in range(n_pix):
                    y = n // width
                    dx = n - y * width - positions[k, m, 0]
                    dy = y - positions[k, m, 1]
                    cost[m, n] = table[dx * dx + dy * dy]
            tol = MASS_TOL * _sum(supply[k], n_pix)
            b[:] = 0.0
            _solve_items(cost, supply[k], n_pix, demand[k], b, np.inf, np.inf, tol, ws)
            value_out[k] = _finish(cost, supply[k], demand[k], b, tol, a_out[k], b_out[k])


# ---------------------------------------------------------------------------------------------- unit squares
_TABLES: dict = {}


def _square_tables(height, width, table):
    """Translation-invariant tables of the multilevel start for an H x W heatmap (cached).

    Offsets are taken from the square's first corner q0 = (x0, y0); corner c sits at q0 + (c & 1, c >> 1).
    Returns
    - dist (2H-1, 2W-1): dist[dy + H-1, dx + W-1] = table[dx^2 + dy^2], the cost of any pixel offset;
    - tiers (T, 4) int64 rows (level, first ring, end ring, pyramid level k), rings in blocks of 2^k pixels
      (:data:`LEVELS`; the last element: the same for :data:`LEVELS_PEAKED`);
    - block_cost (4, B): mean cost of each block's pixels to the 4 corners, for every block a window can hold;
    - block_range (N_POOL, 4) int64 rows (offset in block_cost, first lattice column, columns, first row).
    Block (i, j) of pyramid level k covers offsets dx in [1 + i 2^k, 1 + (i+1) 2^k) (same for dy), so no block
    straddles the lines dx = 1/2, dy = 1/2 that bound the cells at b = 0.
    """
    key = (height, width, table.tobytes())
    if key not in _TABLES:
        dys, dxs = np.mgrid[-(height - 1) : height, -(width - 1) : width]
        dist = np.ascontiguousarray(table[dxs * dxs + dys * dys])
        rdy, rdx = np.mgrid[-(height - 2) : height, -(width - 2) : width]  # every offset a pixel can have
        pix_cost = np.stack([dist[rdy - (c >> 1) + height - 1, rdx - (c & 1) + width - 1] for c in range(4)])
        block_range = np.zeros((N_POOL, 4), np.int64)
        costs = []
        offset = 0
        for k in range(N_POOL):
            col = (rdx - 1) >> k
            row = (rdy - 1) >> k
            n_cols = col.max() - col.min() + 1
            flat = ((row - row.min()) * n_cols + (col - col.min())).ravel()
            size = n_cols * (row.max() - row.min() + 1)
            count = np.maximum(np.bincount(flat, minlength=size), 1)
            costs.append(np.stack([np.bincount(flat, pix_cost[c].ravel(), size) / count for c in range(4)]))
            block_range[k] = (offset, col.min(), n_cols, row.min())
            offset += size
        chains = []
        for levels in (LEVELS, LEVELS_PEAKED):
            tiers = []
            for level, spec in enumerate(levels):
                start = 0
                for end, size in spec:
                    assert start % size == 0 and (end % size == 0 or end == _ALL), "tiers must tile the plane"
                    if end > start:
                        tiers.append((level, start // size, end // size, size.bit_length() - 1))
                    start = end
            chains.append(np.array(tiers, np.int64))
        _TABLES[key] = (dist, chains[0], np.ascontiguousarray(np.concatenate(costs, 1)), block_range, chains[1])
    return _TABLES[key]


@njit(cache=True, error_model="numpy")
def _pixel_costs(dist, height, width, x0, y0, cost):
    """cost (4, P): costs of every pixel to the corners of the square at (x0, y0), rows of the distance table."""
    for c in range(4):
        row0 = height - 1 - y0 - (c >> 1)
        col0 = width - 1 - x0 - (c & 1)
        for y in range(height):
            for x in range(width):  # unsigned indices: no wraparound test, so the copy vectorises
                cost[c, np.uint64(y * width + x)] = dist[np.uint64(row0 + y), np.uint64(col0 + x)]


@njit(cache=True, error_model="numpy")
def _pyramid(supply, height, width, x0, y0, pyramid, lattice):
    """Block sums of the heatmap on the lattice with origin (x0 + 1, y0 + 1).

    pyramid[k, 1 + j, 1 + i] = mass of block (lattice[k, 0] + i, lattice[k, 2] + j) of 2^k x 2^k pixels, with a
    border of zeros; lattice[k, 1] / lattice[k, 3] count the window's block columns / rows.
    """
    for k in range(N_POOL):
        lattice[k, 0] = (-x0 - 1) >> k
        lattice[k, 1] = ((width - 2 - x0) >> k) - lattice[k, 0] + 1
        lattice[k, 2] = (-y0 - 1) >> k
        lattice[k, 3] = ((height - 2 - y0) >> k) - lattice[k, 2] + 1
    pyramid[0, :, :] = 0.0
    for y in range(height):
        for x in range(width):
            pyramid[0, y + 1, x + 1] = supply[y * width + x]
    for k in range(1, N_POOL):
        row0 = 2 * lattice[k, 2] - lattice[k - 1, 2] + 1
        col0 = 2 * lattice[k, 0] - lattice[k - 1, 0] + 1
        pyramid[k, : lattice[k, 3] + 2, : lattice[k, 1] + 2] = 0.0
        for j in range(lattice[k, 3]):
            r = row0 + 2 * j
            for i in range(lattice[k, 1]):
                q = col0 + 2 * i
                pyramid[k, j + 1, i + 1] = ((pyramid[k - 1, r, q] + pyramid[k - 1, r, q + 1])
                                            + (pyramid[k - 1, r + 1, q] + pyramid[k - 1, r + 1, q + 1]))


@njit(cache=True, error_model="numpy")
def _level_items(level, tiers, block_cost, block_range, pyramid, lattice, items_mass, items_cost):
    """The items of a level (blocks of its tiers inside the window, with mass): fills items_mass (n,) and
    items_cost (4, n), returns n."""
    n = 0
    for t in range(tiers.shape[0]):
        if tiers[t, 0] != level:
            continue
        ring_lo, ring_hi, k = tiers[t, 1], tiers[t, 2], tiers[t, 3]
        offset, col_min, n_cols, row_min = block_range[k, 0], block_range[k, 1], block_range[k, 2], block_range[k, 3]
        for j in range(max(lattice[k, 2], -ring_hi), min(lattice[k, 2] + lattice[k, 3], ring_hi)):
            v = j if j >= 0 else -j - 1  # ring of the block row (0 next to the square)
            for i in range(max(lattice[k, 0], -ring_hi), min(lattice[k, 0] + lattice[k, 1], ring_hi)):
                u = i if i >= 0 else -i - 1
                if max(u, v) < ring_lo:
                    continue
                s = pyramid[k, j - lattice[k, 2] + 1, i - lattice[k, 0] + 1]
                if s > 0.0:
                    items_mass[n] = s
                    block = offset + (j - row_min) * n_cols + (i - col_min)
                    for c in range(4):
                        items_cost[c, n] = block_cost[c, block]
                    n += 1
    return n


@njit(cache=True, error_model="numpy")
def _solve_square(supply, height, width, x0, y0, demand, dist, tiers, block_cost, block_range, tiers_peaked, a_out,
                  b_out, cost, pyramid, lattice, items_mass, items_cost, b, ws):
    """One unit-square problem (corner q0 = (x0, y0)): multilevel start, exact pixel level; returns the value."""
    n_pix = height * width
    tol = MASS_TOL * max(_sum(supply, n_pix), 1e-300)
    _pixel_costs(dist, height, width, x0, y0, cost)
    n_act = 0
    for c in range(4):
        n_act += demand[c] > tol
        b[c] = 0.0
    if n_act > 1:
        _pyramid(supply, height, width, x0, y0, pyramid, lattice)
        near = 0.0  # mass of the 4 blocks of 4 x 4 pixels around the square
        for j in range(-1, 1):
            for i in range(-1, 1):
                near += pyramid[2, j - lattice[2, 2] + 1, i - lattice[2, 0] + 1]
        if near > PEAKED * tol / MASS_TOL:
            tiers = tiers_peaked
        n_levels = tiers[-1, 0] + 1
        for level in range(n_levels - 1, -1, -1):  # coarsest from b = 0, then each from the previous one
            n = _level_items(level, tiers, block_cost, block_range, pyramid, lattice, items_mass, items_cost)
            delta = DELTAS[level + 1] if level < n_levels - 1 else np.inf
            _solve_items(items_cost, items_mass, n, demand, b, delta, delta, tol, ws)
        _solve_items(cost, supply, n_pix, demand, b, DELTAS[0], WIDE, tol, ws)
    return _finish(cost, supply, demand, b, tol, a_out, b_out)


@njit(cache=True, parallel=True)
def _solve_squares(supply, height, width, corner, demand, dist, tiers, block_cost, block_range, tiers_peaked, a_out,
                   b_out, value_out, n_chunks):
    """Batch of unit-square problems: corner (N, 2) int64 (x0, y0), demand (N, 4) in corner order."""
    n_problems, n_pix = supply.shape
    for c in prange(n_chunks):
        cost = np.empty((4, n_pix))
        pyramid = np.empty((N_POOL, height + 2, width + 2))
        lattice = np.empty((N_POOL, 4), np.int64)
        items_mass = np.empty(n_pix)
        items_cost = np.empty((4, n_pix))
        b = np.empty(4)
        ws = _workspace(n_pix, 4)
        lo, hi = _chunk(n_problems, n_chunks, c)
        for k in range(lo, hi):
            value_out[k] = _solve_square(supply[k], height, width, corner[k, 0], corner[k, 1], demand[k], dist, tiers,
                                         block_cost, block_range, tiers_peaked, a_out[k], b_out[k], cost, pyramid,
                                         lattice, items_mass, items_cost, b, ws)


# ---------------------------------------------------------------------------------------------- the fused loss
@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _relu_supply(heat, sigma, eps, n_pix, supply):
    """supply = (relu(h) + eps * sigma) / (sum relu(h) + eps) in float64 (the relu suppliers of hdm.loss);
    returns (sum relu(h) + eps, sum |h|) -- the latter is finite iff every h is."""
    positive = 0.0
    size = 0.0
    for p in range(n_pix):
        v = np.float64(heat[p])
        positive += max(v, 0.0)
        size += abs(v)
    mass = positive + eps
    for p in range(n_pix):
        supply[p] = (max(np.float64(heat[p]), 0.0) + eps * np.float64(sigma[p])) / mass
    return mass, size


@njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _relu_gradient(heat, sigma, eps, mass, supply, a, n_pix, grad):
    """Gradient of <a, supply> w.r.t. the heatmap h through the relu suppliers (a: the OT potential):
    grad_j = [1{h_j > 0} (a_j - <a, S>) + eps sigma_j (a_j - <a, sigma>)] / (sum relu(h) + eps)."""
    a_s = 0.0
    a_sigma = 0.0
    for p in range(n_pix):
        a_s += a[p] * supply[p]
        a_sigma += a[p] * np.float64(sigma[p])
    for p in range(n_pix):
        on = 1.0 if heat[p] > 0 else 0.0
        grad[p] = (on * (a[p] - a_s) + eps * np.float64(sigma[p]) * (a[p] - a_sigma)) / mass


@njit(cache=True, parallel=True)
def _solve_relu_squares(heat, sigma, eps, rows, height, width, corner, demand, dist, tiers, block_cost, block_range,
                        tiers_peaked, value_out, b_out, grad_out, size_out, n_chunks):
    n_problems = rows.shape[0]
    n_pix = height * width
    for c in prange(n_chunks):
        supply = np.empty(n_pix)
        a = np.empty(n_pix)
        cost = np.empty((4, n_pix))
        pyramid = np.empty((N_POOL, height + 2, width + 2))
        lattice = np.empty((N_POOL, 4), np.int64)
        items_mass = np.empty(n_pix)
        items_cost = np.empty((4, n_pix))
        b = np.empty(4)
        d = np.empty(4)
        ws = _workspace(n_pix, 4)
        lo, hi = _chunk(n_problems, n_chunks, c)
        for k in range(lo, hi):
            r = rows[k]
            mass, size = _relu_supply(heat[r], sigma[r], eps, n_pix, supply)
            size_out[k] = size
            if not np.isfinite(size):
                continue  # reported by the caller
            total_s = _sum(supply, n_pix)
            total_d = demand[k, 0] + demand[k, 1] + demand[k, 2] + demand[k, 3]
            for m in range(4):
                d[m] = demand[k, m] * (total_s / total_d) if total_d > 0 else demand[k, m]
            value_out[k] = _solve_square(supply, height, width, corner[k, 0], corner[k, 1], d, dist, tiers, block_cost,
                                         block_range, tiers_peaked, a, b_out[k], cost, pyramid, lattice, items_mass,
                                         items_cost, b, ws)
            if grad_out.shape[0] > 0:
                _relu_gradient(heat[r], sigma[r], eps, mass, supply, a, n_pix, grad_out[k])


def solve_relu_squares(heat, sigma, eps, rows, width, corner, demand, table, value_out, b_out, grad_out, n_chunks):
    """The exact loss of :class:`hdm.loss.HDMLoss` with relu suppliers, fused: for each problem k (heatmap row
    ``rows[k]`` of heat (R, P), float32 or float64, P = H*W row-major; sigma (R, P) its softmax), the suppliers
    S = (relu(h) + eps sigma) / (sum relu(h) + eps), the exact OT from S to the 4 corners of the unit square at
    corner[k] (x0, y0) with masses demand[k] (rescaled to S's total), and the gradient of the value w.r.t. h.

    Writes value_out (N,), b_out (N, 4) and grad_out (N, P) (heat's dtype; give it 0 rows to skip the gradient);
    returns the rows whose heatmap has NaN or inf (nothing is solved for them).
    """
    n_pix = heat.shape[1]
    height = n_pix // width
    tables = _square_tables(height, width, table)
    size = np.empty(rows.shape[0])
    _solve_relu_squares(heat, sigma, eps, rows, height, width, corner, demand, *tables, value_out, b_out, grad_out,
                        size, max(1, min(n_chunks, rows.shape[0])))
    return rows[~np.isfinite(size)]


_SQUARE = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])


def solve_grid(supply, width, positions, demand, table, a_out, b_out, value_out, n_chunks):
    """Batch of grid problems without an (N, P, M) cost tensor.

    supply (N, P) with P = H*W row-major pixels, positions (N, M, 2) int64 (x, y) pixel of each demander,
    demand (N, M), ``table[dx*dx + dy*dy]`` = cost of an integer offset (e.g. its square root). Problems whose
    demanders are the corners of a unit pixel square in the order of :func:`hdm.targets.demanders` (offsets
    (0,0), (1,0), (0,1), (1,1)) get the multilevel start; the others are solved from b = 0. Writes a_out (N, P),
    b_out (N, M), value_out (N,).
    """
    n_problems, n_pix = supply.shape
    _check_demanders(positions.shape[1])
    height = n_pix // width
    square = np.zeros(n_problems, bool)
    if positions.shape[1] == 4 and height >= 2 and width >= 2:
        square = (positions - positions[:, :1] == _SQUARE).all(axis=(1, 2))
    rest = np.flatnonzero(~square)
    if rest.size:
        a, b, v = a_out[rest], b_out[rest], value_out[rest]
        _solve_offsets(supply[rest], width, positions[rest], demand[rest], table, a, b, v, min(n_chunks, rest.size))
        a_out[rest], b_out[rest], value_out[rest] = a, b, v
    if square.any():
        idx = np.flatnonzero(square)
        every = idx.size == n_problems  # the usual case: no copies
        sel = (lambda x: x) if every else (lambda x: np.ascontiguousarray(x[idx]))
        a, b, v = sel(a_out), sel(b_out), sel(value_out)
        tables = _square_tables(height, width, table)
        _solve_squares(sel(supply), height, width, np.ascontiguousarray(sel(positions)[:, 0]), sel(demand), *tables, a,
                       b, v, min(n_chunks, idx.size))
        if not every:
            a_out[idx], b_out[idx], value_out[idx] = a, b, v
