"""Compiled kernels of the exact solver in :mod:`hdm.ot` (numba). Internal: call :func:`hdm.ot.emd` instead.

The problem, for one instance with P suppliers of mass s and M demanders of mass d (Σs = Σd):

    min_x  Σ_nm x_nm C_nm   s.t.  x >= 0,  Σ_m x_nm = s_n,  Σ_n x_nm = d_m

is solved by successive shortest paths on the *demanders*, which is cheap because M is tiny (≤ 4 here):

- start with every pixel sending its whole mass to its cheapest demander (b = 0, a = c-transform of b);
- a demander whose "cell" holds more mass than it demands sends the surplus, along a shortest path of the
  M-node graph whose arc i -> j costs min over pixels n in cell i of (C_nj - b_j) - (C_ni - b_i) >= 0, to a
  demander in deficit; potentials b rise by the shortest distances (capped at the target's), which keeps
  every used pair tight (a_n + b_m = C_nm) and every other pair feasible;
- the pixels of each cell are kept in a min-heap per arc keyed by C_nj - C_ni (independent of b), so each
  augmentation costs O(M^2 + log P) and only pixels that actually change cell are touched.

At the end ``a_n = min_m (C_nm - b_m)`` for every pixel (zero-mass pixels included), so ``a_m + b_n <= C``
holds everywhere with equality on the plan's support: (a, b) is an optimal dual pair and its value equals the
primal one.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Excess below this (in units of the total mass, which is 1 after normalisation) counts as zero.
MASS_TOL = 1e-13


@njit(cache=True, inline="always")
def _sift_down(keys, idx, start, size):
    pos = start
    key = keys[pos]
    item = idx[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] < key:
            keys[pos] = keys[child]
            idx[pos] = idx[child]
            pos = child
        else:
            break
    keys[pos] = key
    idx[pos] = item


@njit(cache=True, inline="always")
def _push(keys, idx, size, key, item):
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if keys[parent] <= key:
            break
        keys[pos] = keys[parent]
        idx[pos] = idx[parent]
        pos = parent
    keys[pos] = key
    idx[pos] = item
    return size + 1


@njit(cache=True)
def _solve_one(cost, supply, demand, a_out, b_out, flow, heap_keys, heap_idx):
    """Exact OT for one instance. cost (P, M), supply (P,), demand (M,) float64 with equal totals.

    Writes a (P,) and b (M,) into a_out, b_out and returns the optimal value. flow (P, M), heap_keys and
    heap_idx (M*M, 2P + 8) are scratch space, reused across problems.
    """
    n_pix, n_dem = cost.shape
    total = 0.0
    for n in range(n_pix):
        total += supply[n]
    tol = MASS_TOL * max(total, 1e-300)

    # Active demanders are those with positive mass; the others are fixed after the solve.
    active = np.empty(n_dem, np.int64)
    n_act = 0
    for m in range(n_dem):
        if demand[m] > tol:
            active[n_act] = m
            n_act += 1
    if n_act == 0:
        for n in range(n_pix):
            a_out[n] = 0.0
        for m in range(n_dem):
            b_out[m] = 0.0
        return 0.0

    flow[:, :n_act] = 0.0
    excess = np.empty(n_act, np.float64)
    b = np.zeros(n_act, np.float64)
    for i in range(n_act):
        excess[i] = -demand[active[i]]

    # Every pixel with mass to its cheapest active demander.
    for n in range(n_pix):
        best = 0
        best_c = cost[n, active[0]]
        for i in range(1, n_act):
            c = cost[n, active[i]]
            if c < best_c:
                best_c = c
                best = i
        if supply[n] > 0.0:
            flow[n, best] = supply[n]
            excess[best] += supply[n]

    # One min-heap per arc (i, j): pixels carrying flow to i, keyed by C_nj - C_ni. Built lazily.
    n_arcs = n_act * n_act
    cap = heap_keys.shape[1]
    heap_size = np.zeros(n_arcs, np.int64)
    heap_built = np.zeros(n_arcs, np.bool_)

    dist = np.empty(n_act, np.float64)
    done = np.empty(n_act, np.bool_)
    pred = np.empty(n_act, np.int64)
    path_pixel = np.empty(n_act, np.int64)
    path_from = np.empty(n_act, np.int64)
    path_to = np.empty(n_act, np.int64)

    while True:
        any_excess = False
        for i in range(n_act):
            if excess[i] > tol:
                any_excess = True
                break
        if not any_excess:
            break

        # Dijkstra from all excess nodes at once, stopped at the first deficit node settled. Arcs leave
        # only settled nodes, so the heaps of cells in deficit are never built.
        for i in range(n_act):
            dist[i] = 0.0 if excess[i] > tol else np.inf
            done[i] = False
            pred[i] = -1
        target = -1
        for _ in range(n_act):
            u = -1
            best = np.inf
            for i in range(n_act):
                if not done[i] and dist[i] < best:
                    best = dist[i]
                    u = i
            if u < 0:
                break
            done[u] = True
            if excess[u] < -tol:
                target = u
                break
            mu = active[u]
            for v in range(n_act):
                if v == u or done[v]:
                    continue
                arc = u * n_act + v
                if not heap_built[arc]:
                    mv = active[v]
                    size = 0
                    for n in range(n_pix):
                        if flow[n, u] > 0.0:
                            heap_keys[arc, size] = cost[n, mv] - cost[n, mu]
                            heap_idx[arc, size] = n
                            size += 1
                    for start in range(size // 2 - 1, -1, -1):
                        _sift_down(heap_keys[arc], heap_idx[arc], start, size)
                    heap_size[arc] = size
                    heap_built[arc] = True
                size = heap_size[arc]
                while size > 0 and flow[heap_idx[arc, 0], u] <= 0.0:  # pop stale entries
                    size -= 1
                    heap_keys[arc, 0] = heap_keys[arc, size]
                    heap_idx[arc, 0] = heap_idx[arc, size]
                    _sift_down(heap_keys[arc], heap_idx[arc], 0, size)
                heap_size[arc] = size
                if size > 0:
                    r = heap_keys[arc, 0] - b[v] + b[u]
                    alt = dist[u] + (r if r > 0.0 else 0.0)
                    if alt < dist[v]:
                        dist[v] = alt
                        pred[v] = u
        if target < 0:
            break  # only rounding-level imbalance is left
        reach = dist[target]
        for i in range(n_act):  # settled nodes rise by their distance, all others by the target's
            b[i] += dist[i] if done[i] and dist[i] < reach else reach

        # Bottleneck along the path (read everything before moving anything).
        amount = -excess[target]
        length = 0
        node = target
        while pred[node] >= 0:
            i = pred[node]
            n = heap_idx[i * n_act + node, 0]
            path_pixel[length] = n
            path_from[length] = i
            path_to[length] = node
            length += 1
            if flow[n, i] < amount:
                amount = flow[n, i]
            node = i
        source = node
        if excess[source] < amount:
            amount = excess[source]

        for step in range(length):
            n = path_pixel[step]
            i = path_from[step]
            j = path_to[step]
            left = flow[n, i] - amount
            flow[n, i] = left if left > 0.0 else 0.0
            was_empty = flow[n, j] <= 0.0
            flow[n, j] += amount
            if was_empty:
                mj = active[j]
                for k in range(n_act):
                    if k == j:
                        continue
                    arc = j * n_act + k
                    if not heap_built[arc]:
                        continue  # built from the flow when first needed
                    size = heap_size[arc]
                    if size >= cap:  # compact: keep live, unique entries (at most P)
                        seen = np.zeros(n_pix, np.bool_)
                        seen[n] = True
                        keep = 0
                        for t in range(size):
                            p = heap_idx[arc, t]
                            if flow[p, j] > 0.0 and not seen[p]:
                                seen[p] = True
                                heap_keys[arc, keep] = heap_keys[arc, t]
                                heap_idx[arc, keep] = p
                                keep += 1
                        for start in range(keep // 2 - 1, -1, -1):
                            _sift_down(heap_keys[arc], heap_idx[arc], start, keep)
                        size = keep
                    heap_size[arc] = _push(heap_keys[arc], heap_idx[arc], size, cost[n, active[k]] - cost[n, mj], n)
        excess[target] += amount
        excess[source] -= amount

    # Dual: b on active demanders, a = c-transform, b on inactive ones = c-transform of a.
    for m in range(n_dem):
        b_out[m] = 0.0
    for i in range(n_act):
        b_out[active[i]] = b[i]
    value = 0.0
    for n in range(n_pix):
        best = np.inf
        for i in range(n_act):
            c = cost[n, active[i]] - b[i]
            if c < best:
                best = c
            if flow[n, i] > 0.0:
                value += flow[n, i] * cost[n, active[i]]
        a_out[n] = best
    if n_act < n_dem:
        is_active = np.zeros(n_dem, np.bool_)
        for i in range(n_act):
            is_active[active[i]] = True
        for m in range(n_dem):
            if not is_active[m]:
                best = np.inf
                for n in range(n_pix):
                    c = cost[n, m] - a_out[n]
                    if c < best:
                        best = c
                b_out[m] = best
    return value


def _scratch(n_pix, n_dem):
    return (
        np.empty((n_pix, n_dem), np.float64),
        np.empty((n_dem * n_dem, 2 * n_pix + 8), np.float64),
        np.empty((n_dem * n_dem, 2 * n_pix + 8), np.int64),
    )


_scratch = njit(cache=True, inline="always")(_scratch)


@njit(cache=True)
def _chunk(n_problems, n_chunks, c):
    return c * n_problems // n_chunks, (c + 1) * n_problems // n_chunks


@njit(cache=True, parallel=True)
def solve_dense(cost, supply, demand, a_out, b_out, value_out, n_chunks):
    """Batch of dense problems: cost (N, P, M), supply (N, P), demand (N, M), float64.

    Problems are split into n_chunks contiguous chunks run in parallel, each with its own scratch space.
    """
    n_problems, n_pix, n_dem = cost.shape
    for c in prange(n_chunks):
        flow, heap_keys, heap_idx = _scratch(n_pix, n_dem)
        lo, hi = _chunk(n_problems, n_chunks, c)
        for k in range(lo, hi):
            value_out[k] = _solve_one(cost[k], supply[k], demand[k], a_out[k], b_out[k], flow, heap_keys, heap_idx)


@njit(cache=True, parallel=True)
def solve_grid(supply, width, positions, demand, table, a_out, b_out, value_out, n_chunks):
    """Batch of grid problems without an (N, P, M) cost tensor.

    supply (N, P) with P = H*W row-major pixels, positions (N, M, 2) int64 (x, y) pixel of each demander,
    demand (N, M), ``table[dx*dx + dy*dy]`` = cost of an integer offset (e.g. its square root).
    """
    n_problems, n_pix = supply.shape
    n_dem = positions.shape[1]
    for c in prange(n_chunks):
        flow, heap_keys, heap_idx = _scratch(n_pix, n_dem)
        cost = np.empty((n_pix, n_dem), np.float64)
        lo, hi = _chunk(n_problems, n_chunks, c)
        for k in range(lo, hi):
            for n in range(n_pix):
                y = n // width
                x = n - y * width
                for m in range(n_dem):
                    dx = x - positions[k, m, 0]
                    dy = y - positions[k, m, 1]
                    cost[n, m] = table[dx * dx + dy * dy]
            value_out[k] = _solve_one(cost, supply[k], demand[k], a_out[k], b_out[k], flow, heap_keys, heap_idx)
