"""Figure of a fit's posterior: each constant's 90 % interval against its prior's, and the
correlation matrix (fit/posterior.py). Used by the study report (runs with parameter draws)
and by ``bonecohort posterior --figure``."""

from __future__ import annotations

import numpy as np

from bonecohort.shell.report import _svg, _tag, figure

Z90 = 1.6449


def posterior_svg(post) -> str:
    """Left: prior (grey) and posterior (blue) 90 % intervals of each constant, as the
    shift from the prior's centre in the fitted (log / logit) coordinate; right: posterior
    correlations."""
    p = len(post.frees)
    fig, (ax, cx) = figure(1, 2, figsize=(12, 0.8 + 0.28 * p),
                           gridspec_kw={"width_ratios": [1.2, 1]})
    sd, prior_sd = post.sd(), np.where(np.isfinite(post.prior_sd), post.prior_sd, np.nan)
    shift = post.mean - post.prior_mean
    for j in range(p):
        (pr,) = ax.plot([-Z90 * prior_sd[j], Z90 * prior_sd[j]], [j, j], color="0.75", lw=6,
                        solid_capstyle="butt")
        (po,) = ax.plot([shift[j] - Z90 * sd[j], shift[j] + Z90 * sd[j]], [j, j], color="C0")
        (dot,) = ax.plot([shift[j]], [j], "o", color="C0", ms=3)
        for artist, name in ((pr, "prior"), (po, "posterior"), (dot, "mode")):
            _tag(artist, f"posterior-{name}-{j}")
    labels = [f"{f.path} ({f.transform})" for f in post.frees]
    ax.set_yticks(range(p), labels, fontsize=6)
    ax.invert_yaxis()
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("fitted coordinate minus prior centre (grey: prior 90 %, blue: posterior 90 %)")
    im = cx.imshow(post.corr(), vmin=-1, vmax=1, cmap="RdBu_r")
    _tag(im, "posterior-correlation")
    cx.set_xticks(range(p), [str(j + 1) for j in range(p)], fontsize=5)
    cx.set_yticks(range(p), [f"{j + 1} {f.path}" for j, f in enumerate(post.frees)], fontsize=5)
    cx.set_title("posterior correlations", fontsize=8)
    fig.colorbar(im, ax=cx, shrink=0.6)
    return _svg(fig)
