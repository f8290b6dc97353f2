"""Private Numba kernels computing window features over a block ``(n_samples, n_channels)``.

Every kernel fills columns of a preallocated ``out`` array of shape
``(n_windows, n_channels, n_features)``; window *k* covers samples ``[k*step, k*step + length)``
of the block and ``n_windows = max(0, (n_samples - length) // step + 1)``.

Running sums
------------
The block is cut into segments of ``g = gcd(length, step)`` samples, so every window is a whole
number of segments. One pass per channel accumulates per-segment sums (``|x|``, ``x``, ``x**2``,
``|dx|``, threshold indicators ...), turns them into prefix sums over segments (float64), and
each window is then a difference of two prefix values plus O(1) corrections for the pair or
triple terms that straddle the window start. The cost is O(n_samples) per channel plus O(1) per
window, whatever the window length. Sums that feed a variance are taken about a per-channel
centre (recentring): the block's channel mean (in `_td_basic`, the mean of the first sample of
every segment, as good in practice and ``g`` times cheaper); the cancellation in
``E[x**2] - E[x]**2`` is then that of the window mean relative to the centre, not to zero.

Speed
-----
`_td_basic` and the spectral path take the block channel-major, ``xt`` of shape
``(n_channels, n_samples)`` float64 C-contiguous (`channel_major`, or the free transpose of a
Fortran-ordered float64 block), so every per-channel pass reads contiguous memory. Hot loops
index views from 0 (``cur = buf[lo:hi]; cur[i]``), not ``buf[lo + i]``: Numba guards an index
that may be negative with a wraparound select, which stops LLVM from vectorising the loop
(up to 4x on these loops). Comparisons producing counts are branch-free.

Skewness and kurtosis are computed per window in two passes (O(length) per window): raw-moment
running sums of order 3 and 4 lose too many digits when the window mean is not small.

Flat segments
-------------
Real EMG repeats values (about 89% of rows). Threshold counts are defined so a flat run never
counts (see ``pipeline.features.registry`` for the exact definitions): ZC and WAMP use strict
inequalities on consecutive pairs, and SSC is defined on the window's sequence with consecutive
repeated values collapsed (so a flat-topped peak counts once, a plateau never).
A window whose samples are all equal ("constant window") gives 0 for every ratio feature
(variance, Hjorth mobility/complexity, skewness, kurtosis, AR coefficients).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Slots of the fused time-domain kernel; ``cols[slot]`` is the output column or -1.
TD_MAV, TD_IAV, TD_RMS, TD_VAR, TD_WL, TD_ZC, TD_SSC, TD_WAMP, TD_LOGVAR = range(9)
N_TD = 9
# Slots of the Hjorth kernel.
HJ_ACTIVITY, HJ_MOBILITY, HJ_COMPLEXITY = range(3)
N_HJ = 3
# Slots of the moments kernel.
MO_SKEW, MO_KURT, MO_XKURT = range(3)
N_MO = 3
# Slots of the spectral statistics kernel.
SP_MNF, SP_MDF, SP_PEAK, SP_ENTROPY = range(4)
N_SP = 4
# Reassociation lets LLVM vectorise the running sums; no "nnan"/"ninf", so NaN and inf in
# the data propagate as in NumPy.
_FASTMATH = {"reassoc", "nsz", "contract"}


@njit(cache=True, nogil=True)
def n_windows(n_samples: int, length: int, step: int) -> int:
    """Return the number of whole windows in ``n_samples`` samples."""
    if n_samples < length:
        return 0
    return (n_samples - length) // step + 1


@njit(cache=True, nogil=True)
def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


@njit(cache=True, nogil=True)
def _load_channel(x, c, m, buf):
    """Copy channel ``c`` of ``x[:m]`` into ``buf`` (float64) and return its mean."""
    s = 0.0
    for i in range(m):
        v = np.float64(x[i, c])
        buf[i] = v
        s += v
    return s / m


@njit(cache=True, nogil=True)
def _prefix(S, nseg):
    for q in range(S.shape[0]):
        for s in range(nseg):
            S[q, s + 1] += S[q, s]


@njit(cache=True, nogil=True)
def channel_major(x, xt):
    """Copy ``x[:m]`` (n_samples, n_channels), any layout and dtype, into the float64
    ``xt`` of shape ``(n_channels, m)``, reading ``x`` in its memory order."""
    nch, m = xt.shape
    if x.strides[0] >= x.strides[1]:  # C order: rows are contiguous
        for i in range(m):
            for c in range(nch):
                xt[c, i] = x[i, c]
    else:
        for c in range(nch):
            for i in range(m):
                xt[c, i] = x[i, c]


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _mean(b, m):
    """Mean of ``b[:m]`` (vectorised; only used as a recentring constant)."""
    s = 0.0
    for i in range(m):
        s += b[i]
    return s / m


@njit(cache=True, nogil=True)
def _compact(flags, m, pos):
    """Store the ``i < m`` with ``flags[i]`` (0 or 1) in ``pos`` and return their count.

    With ``flags[i] = x[i] != x[i-1]`` (``flags[0] = 0``), run 0 of ``x[:m]`` is
    ``[0, pos[0])`` and run ``j`` is ``[pos[j-1], pos[j])``.
    """
    nc = 0
    for i in range(m):
        pos[nc] = i  # branch-free compaction: kept only if nc advances
        nc += flags[i]
    return nc


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _td_basic(xt, length, step, zc_thr, ssc_thr, wamp_thr, logvar_eps, var_ddof, cols, out):
    """Fill MAV, IAV, RMS, VAR, WL, ZC, SSC, WAMP and log-variance columns (``cols`` by slot)
    of a channel-major float64 block ``xt`` of shape (n_channels, n_samples).

    VAR divides by ``length - var_ddof``; the log-variance always uses ``ddof=0``.

    Per channel: one vectorised pass of per-segment sums that also stores the change flags
    ``x[i] != x[i-1]``; for SSC, the flags are compacted into change positions and the runs
    scanned once. SSC counts the interior runs of a window: with ``r(i)`` the index of the run
    holding sample ``i`` (the number of changes at or before ``i``), the runs strictly between
    ``r(a)`` and ``r(b-1)``; ``cind`` is the prefix sum of the per-run turning-point
    indicators, so each window is O(1).
    """
    nch, n = xt.shape
    nw = n_windows(n, length, step)
    if nw == 0:
        return
    g = _gcd(length, step)
    m = (nw - 1) * step + length
    nseg = m // g
    L = np.float64(length)
    var_scale = L / (L - var_ddof) if length > var_ddof else 0.0
    want_ssc = cols[TD_SSC] >= 0
    pos = np.empty(m, np.int64) if want_ssc else np.empty(0, np.int64)
    cind = np.zeros(m + 1 if want_ssc else 1, np.int64)
    flags = np.zeros(m, np.uint8)  # flags[i] = x[i] != x[i-1]
    S = np.zeros((nseg + 1, 8))  # prefix sums by segment boundary
    for c in range(nch):
        buf = xt[c]
        cen = _mean(buf[:m:g], nseg)  # centre: mean of the first sample of every segment
        for s in range(nseg):
            lo = s * g
            hi = lo + g
            s_abs = 0.0
            s_x = 0.0
            s_x2c = 0.0
            s_x2 = 0.0
            s_adx = 0.0
            s_zc = 0
            s_wamp = 0
            s_chg = 0
            if lo == 0:
                v = buf[0]
                d = v - cen
                s_abs += abs(v)
                s_x += d
                s_x2c += d * d
                s_x2 += v * v
                lo = 1
            # Branch-free sums (vectorised by LLVM with reassociation). Views indexed from 0:
            # an offset index would get Numba's negative-index check, which blocks it.
            cur = buf[lo:hi]
            prv = buf[lo - 1 : hi - 1]
            flg = flags[lo:hi]
            for i in range(hi - lo):
                v = cur[i]
                p = prv[i]
                flg[i] = v != p
                d = v - cen
                s_abs += abs(v)
                s_x += d
                s_x2c += d * d
                s_x2 += v * v
                adv = abs(v - p)
                s_adx += adv
                cross = ((v > 0.0) & (p < 0.0)) | ((v < 0.0) & (p > 0.0))
                s_zc += cross & (adv >= zc_thr)
                s_wamp += adv > wamp_thr
                s_chg += v != p
            S[s + 1, 0] = s_abs
            S[s + 1, 1] = s_x
            S[s + 1, 2] = s_x2c
            S[s + 1, 3] = s_x2
            S[s + 1, 4] = s_adx
            S[s + 1, 5] = s_zc
            S[s + 1, 6] = s_wamp
            S[s + 1, 7] = s_chg
        if want_ssc:
            nc = _compact(flags, m, pos)
            # Run j >= 1 is a turning point if its value is above or below both neighbours.
            cind[1] = 0
            for j in range(1, nc):
                st = pos[j - 1]
                v = buf[st]
                pv = buf[st - 1]
                nx = buf[pos[j]]
                turn = ((v > pv) & (v > nx)) | ((v < pv) & (v < nx))
                big = max(abs(v - pv), abs(nx - v)) >= ssc_thr
                cind[j + 1] = cind[j] + (turn & big)
        for s in range(nseg):
            for q in range(8):
                S[s + 1, q] += S[s, q]
        for k in range(nw):
            a = k * step
            sa = a // g
            sb = (a + length) // g
            d_abs = S[sb, 0] - S[sa, 0]
            d_x = S[sb, 1] - S[sa, 1]
            d_x2c = S[sb, 2] - S[sa, 2]
            d_x2 = S[sb, 3] - S[sa, 3]
            d_adx = S[sb, 4] - S[sa, 4]
            d_zc = S[sb, 5] - S[sa, 5]
            d_wamp = S[sb, 6] - S[sa, 6]
            d_chg = S[sb, 7] - S[sa, 7]
            r_first = np.int64(S[sa, 7])  # changes before a
            if a > 0:
                # The pair (a-1, a) was counted with sample a but lies across the window start.
                v = buf[a]
                p = buf[a - 1]
                adv = abs(v - p)
                d_adx -= adv
                if ((v > 0.0 and p < 0.0) or (v < 0.0 and p > 0.0)) and adv >= zc_thr:
                    d_zc -= 1.0
                if adv > wamp_thr:
                    d_wamp -= 1.0
                if v != p:
                    d_chg -= 1.0
                    r_first += 1
            if d_chg == 0.0:
                var = 0.0
                d_adx = 0.0
            else:
                mu = d_x / L
                var = max(d_x2c / L - mu * mu, 0.0)
            if cols[TD_MAV] >= 0:
                out[k, c, cols[TD_MAV]] = d_abs / L
            if cols[TD_IAV] >= 0:
                out[k, c, cols[TD_IAV]] = d_abs
            if cols[TD_RMS] >= 0:
                out[k, c, cols[TD_RMS]] = np.sqrt(max(d_x2, 0.0) / L)
            if cols[TD_VAR] >= 0:
                out[k, c, cols[TD_VAR]] = var * var_scale
            if cols[TD_WL] >= 0:
                out[k, c, cols[TD_WL]] = d_adx
            if cols[TD_ZC] >= 0:
                out[k, c, cols[TD_ZC]] = d_zc
            if want_ssc:
                r_last = np.int64(S[sb, 7])  # run index of sample b - 1
                ssc = 0.0
                if r_last > r_first + 1:
                    ssc = np.float64(cind[r_last] - cind[r_first + 1])
                out[k, c, cols[TD_SSC]] = ssc
            if cols[TD_WAMP] >= 0:
                out[k, c, cols[TD_WAMP]] = d_wamp
            if cols[TD_LOGVAR] >= 0:
                out[k, c, cols[TD_LOGVAR]] = np.log(var + logvar_eps)


@njit(cache=True, nogil=True)
def _td_hjorth(x, length, step, cols, out):
    """Fill Hjorth activity, mobility and complexity columns (``cols`` by slot)."""
    n, nch = x.shape
    nw = n_windows(n, length, step)
    if nw == 0:
        return
    g = _gcd(length, step)
    m = (nw - 1) * step + length
    nseg = m // g
    L = np.float64(length)
    buf = np.empty(m)
    dd = np.zeros(m)  # second difference attributed to its last sample
    S = np.zeros((7, nseg + 1))
    for c in range(nch):
        cen = _load_channel(x, c, m, buf)
        S[:] = 0.0
        for s in range(nseg):
            s_x = 0.0
            s_x2 = 0.0
            s_d = 0.0
            s_d2 = 0.0
            s_dd = 0.0
            s_dd2 = 0.0
            s_chg = 0.0
            for i in range(s * g, s * g + g):
                v = buf[i] - cen
                s_x += v
                s_x2 += v * v
                if i >= 1:
                    d1 = buf[i] - buf[i - 1]
                    s_d += d1
                    s_d2 += d1 * d1
                    if d1 != 0.0:
                        s_chg += 1.0
                    if i >= 2:
                        d2 = d1 - (buf[i - 1] - buf[i - 2])
                        dd[i] = d2
                        s_dd += d2
                        s_dd2 += d2 * d2
            S[0, s + 1] = s_x
            S[1, s + 1] = s_x2
            S[2, s + 1] = s_d
            S[3, s + 1] = s_d2
            S[4, s + 1] = s_dd
            S[5, s + 1] = s_dd2
            S[6, s + 1] = s_chg
        _prefix(S, nseg)
        for k in range(nw):
            a = k * step
            sa = a // g
            sb = (a + length) // g
            d_x = S[0, sb] - S[0, sa]
            d_x2 = S[1, sb] - S[1, sa]
            d_d = S[2, sb] - S[2, sa]
            d_d2 = S[3, sb] - S[3, sa]
            d_dd = S[4, sb] - S[4, sa]
            d_dd2 = S[5, sb] - S[5, sa]
            d_chg = S[6, sb] - S[6, sa]
            if a >= 1:
                d1 = buf[a] - buf[a - 1]
                d_d -= d1
                d_d2 -= d1 * d1
                if d1 != 0.0:
                    d_chg -= 1.0
            for j in range(a, a + 2):
                if j >= 2:
                    d_dd -= dd[j]
                    d_dd2 -= dd[j] * dd[j]
            act = 0.0
            mob = 0.0
            comp = 0.0
            if d_chg > 0.0:
                mu = d_x / L
                act = max(d_x2 / L - mu * mu, 0.0)
                mu_d = d_d / (L - 1.0)
                var_d = max(d_d2 / (L - 1.0) - mu_d * mu_d, 0.0)
                mu_dd = d_dd / (L - 2.0)
                var_dd = max(d_dd2 / (L - 2.0) - mu_dd * mu_dd, 0.0)
                if act > 0.0:
                    mob = np.sqrt(var_d / act)
                if var_d > 0.0 and mob > 0.0:
                    comp = np.sqrt(var_dd / var_d) / mob
            if cols[HJ_ACTIVITY] >= 0:
                out[k, c, cols[HJ_ACTIVITY]] = act
            if cols[HJ_MOBILITY] >= 0:
                out[k, c, cols[HJ_MOBILITY]] = mob
            if cols[HJ_COMPLEXITY] >= 0:
                out[k, c, cols[HJ_COMPLEXITY]] = comp


@njit(cache=True, nogil=True)
def _window_step(buf, a, length):
    """Quantisation step of the window ``buf[a:a + length]``: the greatest common divisor
    of its nonzero steps ``|x_i - x_(i-1)|`` (Euclid on floats, residues below ``1e-9``
    times the largest step taken as 0); 0 for a constant window.

    The smallest step alone is not enough: sEMG held at a lower device rate (the UCI Myo
    data repeat each sample about 5 times) often moves by 2 or more steps between changes.
    """
    dmax = 0.0
    for i in range(a + 1, a + length):
        dmax = max(dmax, abs(buf[i] - buf[i - 1]))
    tol = 1e-9 * dmax
    g = 0.0
    for i in range(a + 1, a + length):
        d = abs(buf[i] - buf[i - 1])
        if d > tol:
            hi = max(g, d)
            lo = min(g, d)
            while lo > tol:
                hi, lo = lo, np.fmod(hi, lo)
            g = hi
    return g


@njit(cache=True, nogil=True)
def _td_log(x, length, step, eps, use_step, col, out):
    """Fill the log detector ``exp(mean(log(|x| + eps)))``; a zero of ``|x| + eps`` gives 0.

    With ``use_step``, ``eps`` of each window is its quantisation step (`_window_step`). The
    log sums are prefix sums for the step of the whole block (that of quantised data, which
    nearly every window shares: 99.99 % of the UCI EMG windows); a window whose own step
    differs by more than 1e-9 relative is summed directly, O(length).
    """
    n, nch = x.shape
    nw = n_windows(n, length, step)
    if nw == 0:
        return
    g = _gcd(length, step)
    m = (nw - 1) * step + length
    nseg = m // g
    L = np.float64(length)
    buf = np.empty(m)
    S = np.zeros((2, nseg + 1))
    for c in range(nch):
        _load_channel(x, c, m, buf)
        e0 = _window_step(buf, 0, m) if use_step else eps
        S[:] = 0.0
        for s in range(nseg):
            s_log = 0.0
            s_zero = 0.0
            for i in range(s * g, s * g + g):
                v = abs(buf[i]) + e0
                if v > 0.0:
                    s_log += np.log(v)
                else:
                    s_zero += 1.0
            S[0, s + 1] = s_log
            S[1, s + 1] = s_zero
        _prefix(S, nseg)
        for k in range(nw):
            a = k * step
            e = _window_step(buf, a, length) if use_step else eps
            if abs(e - e0) <= 1e-9 * e0:
                sa = a // g
                sb = (a + length) // g
                nzero = S[1, sb] - S[1, sa]
                s_log = S[0, sb] - S[0, sa]
            else:
                nzero = 0.0
                s_log = 0.0
                for i in range(a, a + length):
                    v = abs(buf[i]) + e
                    if v > 0.0:
                        s_log += np.log(v)
                    else:
                        nzero += 1.0
            out[k, c, col] = 0.0 if nzero > 0.0 else np.exp(s_log / L)


@njit(cache=True, nogil=True)
def _td_ssc_hudgins(x, length, step, thr, col, out):
    """Fill SSC as Hudgins (1993) and libemg count it: interior samples of the window with
    ``(x_i - x_(i-1)) * (x_i - x_(i+1)) >= thr`` on the raw samples (at ``thr = 0`` every
    sample of a flat run counts). Integer prefix counts, so each window is O(1)."""
    n, nch = x.shape
    nw = n_windows(n, length, step)
    if nw == 0:
        return
    m = (nw - 1) * step + length
    buf = np.empty(m)
    cnt = np.zeros(m + 1, np.int64)  # cnt[i + 1]: indicators of samples 1 .. i
    for c in range(nch):
        _load_channel(x, c, m, buf)
        cnt[0] = 0
        cnt[1] = 0
        for i in range(1, m - 1):
            v = buf[i]
            cnt[i + 1] = cnt[i] + ((v - buf[i - 1]) * (v - buf[i + 1]) >= thr)
        cnt[m] = cnt[m - 1]
        for k in range(nw):
            a = k * step
            # interior samples a + 1 .. a + length - 2
            out[k, c, col] = np.float64(cnt[a + length - 1] - cnt[a + 1]) if length > 2 else 0.0


@njit(cache=True, nogil=True)
def _td_moments(x, length, step, cols, out):
    """Fill skewness, Pearson kurtosis ``m4 / m2**2`` and excess kurtosis (``- 3``) per
    window: biased moments, as ``scipy.stats.skew`` and ``scipy.stats.kurtosis`` (the latter
    with ``fisher=False`` for Pearson); constant windows give 0 for all three."""
    n, nch = x.shape
    nw = n_windows(n, length, step)
    if nw == 0:
        return
    m = (nw - 1) * step + length
    L = np.float64(length)
    buf = np.empty(m)
    for c in range(nch):
        _load_channel(x, c, m, buf)
        for k in range(nw):
            a = k * step
            constant = True
            mu = 0.0
            for i in range(a, a + length):
                mu += buf[i]
                if buf[i] != buf[a]:
                    constant = False
            skew = 0.0
            kurt = 0.0
            xkurt = 0.0
            if not constant:
                mu /= L
                m2 = 0.0
                m3 = 0.0
                m4 = 0.0
                for i in range(a, a + length):
                    d = buf[i] - mu
                    d2 = d * d
                    m2 += d2
                    m3 += d2 * d
                    m4 += d2 * d2
                m2 /= L
                m3 /= L
                m4 /= L
                if m2 > 0.0:
                    skew = m3 / m2**1.5
                    kurt = m4 / (m2 * m2)
                    xkurt = kurt - 3.0
            if cols[MO_SKEW] >= 0:
                out[k, c, cols[MO_SKEW]] = skew
            if cols[MO_KURT] >= 0:
                out[k, c, cols[MO_KURT]] = kurt
            if cols[MO_XKURT] >= 0:
                out[k, c, cols[MO_XKURT]] = xkurt


@njit(cache=True, nogil=True)
def _td_ar(x, length, step, order, demean, lpc_sign, col0, out):
    """Fill Yule-Walker AR coefficients ``a_1..a_p`` (``x_t = sum a_k x_{t-k} + e_t``).

    Biased autocovariance (divided by ``length``) of the mean-removed window, or of the raw
    window if not ``demean``, from running sums of lagged products, then Levinson-Durbin.
    With ``lpc_sign`` the coefficients are negated: the prediction-error filter
    ``1 + a_1 z^-1 + ...`` that MATLAB ``lpc`` returns (which with ``demean=False`` it equals).
    """
    n, nch = x.shape
    nw = n_windows(n, length, step)
    if nw == 0:
        return
    p = order
    g = _gcd(length, step)
    m = (nw - 1) * step + length
    nseg = m // g
    L = np.float64(length)
    buf = np.empty(m)
    # rows 0..p: lag products x_i x_{i-k} attributed to i; row p+1: x; row p+2: changes
    S = np.zeros((p + 3, nseg + 1))
    r = np.empty(p + 1)
    phi = np.empty(p)
    tmp = np.empty(p)
    for c in range(nch):
        cen = _load_channel(x, c, m, buf)
        for i in range(m):
            buf[i] -= cen
        S[:] = 0.0
        for s in range(nseg):
            for i in range(s * g, s * g + g):
                v = buf[i]
                for lag in range(min(p, i) + 1):
                    S[lag, s + 1] += v * buf[i - lag]
                S[p + 1, s + 1] += v
                if i >= 1 and v != buf[i - 1]:
                    S[p + 2, s + 1] += 1.0
        _prefix(S, nseg)
        for k in range(nw):
            a = k * step
            b = a + length
            sa = a // g
            sb = b // g
            d_chg = S[p + 2, sb] - S[p + 2, sa]
            if a >= 1 and buf[a] != buf[a - 1]:
                d_chg -= 1.0
            if d_chg == 0.0:
                for j in range(p):
                    out[k, c, col0 + j] = 0.0
                continue
            sx = S[p + 1, sb] - S[p + 1, sa]
            # The lag sums are of x - cen; the raw window's products are those about -cen.
            mu = sx / L if demean else -cen
            head = 0.0  # sum of x_a .. x_{a+lag-1}
            tail_s = 0.0  # sum of x_{b-lag} .. x_{b-1}
            for lag in range(p + 1):
                if lag > 0:
                    head += buf[a + lag - 1]
                    tail_s += buf[b - lag]
                sk = S[lag, sb] - S[lag, sa]
                for i in range(a, a + lag):
                    if i >= lag:
                        sk -= buf[i] * buf[i - lag]
                r[lag] = (sk - mu * ((sx - head) + (sx - tail_s)) + (L - lag) * mu * mu) / L
            # Levinson-Durbin
            err = r[0]
            ok = err > 0.0
            for j in range(p):
                phi[j] = 0.0
            if ok:
                for mm in range(1, p + 1):
                    acc = r[mm]
                    for j in range(1, mm):
                        acc -= phi[j - 1] * r[mm - j]
                    kap = acc / err
                    for j in range(1, mm):
                        tmp[j - 1] = phi[j - 1] - kap * phi[mm - j - 1]
                    for j in range(1, mm):
                        phi[j - 1] = tmp[j - 1]
                    phi[mm - 1] = kap
                    err *= 1.0 - kap * kap
                    if err <= 0.0:
                        break
            sgn = -1.0 if lpc_sign else 1.0
            for j in range(p):
                out[k, c, col0 + j] = sgn * phi[j]


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _window_mean(b, a, length):
    """Mean of ``b[a:a + length]`` (vectorised)."""
    s = 0.0
    w = b[a : a + length]
    for i in range(length):
        s += w[i]
    return s / length


@njit(cache=True, nogil=True)
def _fill_windows(xt, w0, nb, length, step, detrend, taper, seg, constant):
    """Write windows ``w0 .. w0 + nb - 1`` of every channel of ``xt`` (n_channels, n_samples),
    mean removed if ``detrend``, multiplied by ``taper``, into ``seg[:, :nb, :length]`` (the
    zero padding is left alone); set ``constant[w0 + w, c]`` where all samples are equal."""
    nch = xt.shape[0]
    for c in range(nch):
        b = xt[c]
        for w in range(nb):
            a = (w0 + w) * step
            mu = _window_mean(b, a, length) if detrend else 0.0
            src = b[a : a + length]
            dst = seg[c, w]
            v0 = src[0]
            ndiff = 0
            for i in range(length):
                dst[i] = (src[i] - mu) * taper[i]
                ndiff += src[i] != v0
            constant[w0 + w, c] = ndiff == 0


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _sum(p, lo, hi):
    """Sum of ``p[lo:hi]`` (vectorised)."""
    s = 0.0
    v = p[lo:hi]
    for j in range(hi - lo):
        s += v[j]
    return s


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _weighted_sum(p, f, lo, hi):
    """Sum of ``f[lo:hi] * p[lo:hi]`` (vectorised)."""
    s = 0.0
    v = p[lo:hi]
    w = f[lo:hi]
    for j in range(hi - lo):
        s += w[j] * v[j]
    return s


@njit(cache=True, nogil=True)
def _spectral_stats(
    X,
    w0,
    scale,
    freqs,
    kmin,
    kmax,
    band_lo,
    band_hi,
    df,
    normalize_entropy,
    constant,
    cols,
    band_cols,
    rel_cols,
    out,
):
    """Fill spectral statistics from a batch of one-sided spectra.

    Parameters
    ----------
    X : complex ndarray of shape (n_channels, n_batch, n_bins)
        Discrete Fourier transforms of the tapered windows ``w0 .. w0 + n_batch - 1``.
    scale : ndarray of shape (n_bins,)
        Factor turning ``|X|**2`` into a one-sided power spectral density.
    kmin, kmax : int
        Inclusive bin range of the analysis band (MNF, MDF, peak, entropy, relative powers).
    band_lo, band_hi : int ndarray of shape (n_bands,)
        Bin range ``[lo, hi)`` of each band.
    constant : bool ndarray of shape (n_windows, n_channels)
        Constant windows get 0 for every ratio statistic.

    Band totals are vectorised sums (reassociated, like NumPy's pairwise sums); the median
    frequency's cumulative sum runs bin by bin, as ``numpy.cumsum``.
    """
    nch, nb, nbins = X.shape
    nbands = band_lo.shape[0]
    nrange = kmax - kmin + 1
    hi = kmax + 1
    p = np.empty(nbins)
    for c in range(nch):
        for w in range(nb):
            kw = w0 + w
            xw = X[c, w]
            for j in range(nbins):
                z = xw[j]
                p[j] = (z.real * z.real + z.imag * z.imag) * scale[j]
            tot = _sum(p, kmin, hi)
            degenerate = constant[kw, c] or not tot > 0.0
            if cols[SP_MNF] >= 0:
                mnf = 0.0 if degenerate else _weighted_sum(p, freqs, kmin, hi) / tot
                out[kw, c, cols[SP_MNF]] = mnf
            if cols[SP_MDF] >= 0:
                fm = 0.0
                if not degenerate:
                    half = 0.5 * tot
                    cum = 0.0
                    for j in range(kmin, hi):
                        cum += p[j]
                        if cum >= half:
                            fm = freqs[j]
                            break
                out[kw, c, cols[SP_MDF]] = fm
            if cols[SP_PEAK] >= 0:
                kpeak = kmin
                pmax = -1.0
                for j in range(kmin, hi):
                    if p[j] > pmax:
                        pmax = p[j]
                        kpeak = j
                out[kw, c, cols[SP_PEAK]] = 0.0 if degenerate else freqs[kpeak]
            if cols[SP_ENTROPY] >= 0:
                h = 0.0
                if not degenerate:
                    plogp = 0.0
                    for j in range(kmin, hi):
                        if p[j] > 0.0:
                            plogp += p[j] * np.log(p[j])
                    # H = -sum q log q with q = p / tot
                    h = max(np.log(tot) - plogp / tot, 0.0)
                    if normalize_entropy:
                        h = h / np.log(nrange) if nrange > 1 else 0.0
                out[kw, c, cols[SP_ENTROPY]] = h
            for bidx in range(nbands):
                bp = _sum(p, band_lo[bidx], band_hi[bidx])
                if band_cols[bidx] >= 0:
                    out[kw, c, band_cols[bidx]] = bp * df
                if rel_cols[bidx] >= 0:
                    out[kw, c, rel_cols[bidx]] = 0.0 if degenerate else bp / tot
