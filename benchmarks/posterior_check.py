"""Checks of the Laplace posterior (fit/posterior.py) on the test suite's small virtual trial.

1. Synthetic coverage: constants drawn from the prior, targets simulated at them with noise of
   the likelihood's SD (each target's tolerance), refitted to the mode (Levenberg-Marquardt)
   and their 90 % Laplace intervals checked against the truth; R replicates x 3 constants.
2. A sampler: blackjax NUTS (window adaptation) on the same posterior for one synthetic
   data set, against the Laplace mean, SD and 90 % interval.
3. The Hessian by central differences of the gradient against forward-over-reverse.

Usage: .venv/bin/python benchmarks/posterior_check.py [replicates] [nuts_samples]
(blackjax: `pip install -e .[bench]`). Prints a summary and writes JSON to
benchmarks/results/<time>-posterior_check.json.
"""

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_calibrate import TARGETS  # noqa: E402  (the suite's small trial)

from bonecohort.cohort import with_x64  # noqa: E402
from bonecohort.fit.calibrate import Objective, parse_free  # noqa: E402
from bonecohort.fit.posterior import curvature, find_mode, laplace  # noqa: E402
from bonecohort.fit.targets import parse_targets  # noqa: E402
from bonecohort.model.params import hand_set_model  # noqa: E402

FREE = "hormones.rho_L,sites.mech_gain.lumbar_spine,agents.exposure.estradiol.transdermal"
PRIOR_SD = 0.5
Z90 = 1.6449


def synthetic(obj, truth, rng):
    """Targets simulated at ``truth`` plus noise with SD = tolerance (log scale for HRs)."""
    sim = obj(truth, with_prior=False)[2]
    eps = rng.standard_normal(len(sim))
    return np.where(obj.log_scale, sim * np.exp(eps * obj.tolerance), sim + eps * obj.tolerance)


def coverage(obj, replicates, seed=1):
    rng = np.random.default_rng(seed)
    th0 = np.asarray(obj.theta0)
    z = []
    for _ in range(replicates):
        truth = th0 + PRIOR_SD * rng.standard_normal(th0.size)
        o = obj.retarget(synthetic(obj, truth, rng))
        theta, _ = find_mode(o, th0)
        z.append((truth - theta) / laplace(o, theta).sd())
    z = np.asarray(z)
    return {"replicates": replicates, "intervals": int(z.size),
            "coverage_90": float(np.mean(np.abs(z) <= Z90)), "mean_z2": float(np.mean(z ** 2))}


@with_x64
def nuts(obj, samples, seed=3):
    import blackjax

    sd = PRIOR_SD
    th0 = jnp.asarray(obj.theta0)

    def logdensity(theta):
        total = jnp.sum(((theta - th0) / sd) ** 2)
        for idx, _, _, loss in obj.parts:
            total = total + loss(theta, *obj.arguments(idx))[0]
        return -0.5 * total

    key = jax.random.key(seed)
    warm = blackjax.window_adaptation(blackjax.nuts, logdensity)
    (state, params), _ = warm.run(key, th0, num_steps=samples // 2)
    kernel = jax.jit(blackjax.nuts(logdensity, **params).step)
    draws = []
    for k in jax.random.split(jax.random.fold_in(key, 1), samples):
        state, _ = kernel(k, state)
        draws.append(np.asarray(state.position))
    return np.asarray(draws)


def main():
    replicates = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    model = hand_set_model()
    obj = Objective(parse_targets(TARGETS, "mini.toml"), model, parse_free(FREE, model),
                    jnp.float64, prior_sd=PRIOR_SD)
    out = {"constants": FREE.split(","), "prior_sd": PRIOR_SD}
    t0 = time.perf_counter()
    out["coverage"] = coverage(obj, replicates)
    out["coverage"]["seconds"] = round(time.perf_counter() - t0, 1)
    print("coverage", out["coverage"], flush=True)

    rng = np.random.default_rng(7)
    th0 = np.asarray(obj.theta0)
    o = obj.retarget(synthetic(obj, th0 + PRIOR_SD * rng.standard_normal(th0.size), rng))
    theta, _ = find_mode(o, th0)
    post = laplace(o, theta)
    t0 = time.perf_counter()
    draws = nuts(o, samples)
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    out["nuts"] = {"samples": samples, "seconds": round(time.perf_counter() - t0, 1),
                   "mean": draws.mean(0).tolist(), "sd": draws.std(0, ddof=1).tolist(),
                   "q05": lo.tolist(), "q95": hi.tolist()}
    out["laplace"] = {"mean": post.mean.tolist(), "sd": post.sd().tolist(),
                      "q05": (post.mean - Z90 * post.sd()).tolist(),
                      "q95": (post.mean + Z90 * post.sd()).tolist(), "method": post.method}
    print("nuts", out["nuts"], "\nlaplace", out["laplace"], flush=True)

    t0 = time.perf_counter()
    h_fd, _ = curvature(o, theta)
    fd_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    h_ex, _ = curvature(o, theta, "exact")
    out["hessian"] = {"max_abs_diff_over_max": float(np.max(np.abs(h_fd - h_ex))
                                                     / np.max(np.abs(h_ex))),
                      "differences_s": round(fd_s, 1),
                      "exact_s_with_compile": round(time.perf_counter() - t0, 1)}
    print("hessian", out["hessian"])
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = Path(__file__).parent / "results" / f"{stamp}-posterior_check.json"
    path.write_text(json.dumps(out, indent=2))
    print("written", path)


if __name__ == "__main__":
    main()
