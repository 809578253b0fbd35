"""Parameter recovery for a signal-detection model of perception and confidence.

Each trial shows a stimulus s from a grid on [-1, 1]. The type-1 decision value is
d = s + bias_sens + noise_sens * e1 and the response is d > 0. Confidence reads |d| through
metacognitive noise, z = |d| + noise_meta * e2, and the rating is the number of
`confidence_criteria` below z (0 .. K). `simulate` draws trials from known parameters; `fit`
recovers them by maximum likelihood in two stages: bias and sensory noise from the type-1 responses
(closed form), then metacognitive noise from the ratings given the responses, whose likelihood
integrates over the unobserved d numerically (Gauss-Legendre), not by simulation.

Run in the three data modes this separates data variance (independent), fitting variance (shared)
and both (crossed, with a nested random-effects variance decomposition in the report).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import optimize, special

from sweeper.report import axis_columns, pyplot, variance_components, write_csv

__version__ = "1"

PARAMS = ("bias_sens", "noise_sens", "noise_meta")
DATA_DEFAULTS = {"stimuli_stepsize": 0.25, "nsamples": 1000, "nsubjects": 1, "bias_sens": 0.0,
                 "noise_sens": 0.5, "noise_meta": 0.2, "confidence_criteria": [0.3, 0.6, 0.9]}
QUAD_NODES = 24  # Gauss-Legendre nodes per piece of the confidence integral
FIT_DEFAULTS = {"method": "L-BFGS-B", "tol": 1e-9, "max_iter": 500, "quad_nodes": QUAD_NODES}
BOUNDS = {"bias_sens": (-2.0, 2.0), "noise_sens": (1e-3, 10.0), "noise_meta": (1e-3, 10.0)}
METHODS = ("L-BFGS-B", "Nelder-Mead", "Powell", "TNC")


def stimulus_levels(stepsize: float) -> np.ndarray:
    """The stimulus grid on [-1, 1] with the given step (both ends included)."""
    n = int(round(2.0 / stepsize))
    return np.linspace(-1.0, 1.0, n + 1)


def validate(data: dict, fit: dict) -> None:
    """Checks made at plan time, so a bad value fails before any Ray work."""
    d = {**DATA_DEFAULTS, **data}
    f = {**FIT_DEFAULTS, **fit}
    step = d["stimuli_stepsize"]
    if not isinstance(step, (int, float)) or not 0 < step <= 1 or abs(2 / step - round(2 / step)) > 1e-9:
        raise ValueError(f"stimuli_stepsize must divide 2 (e.g. 0.25, 0.5), got {step!r}")
    for key in ("nsamples", "nsubjects"):
        if isinstance(d[key], bool) or not isinstance(d[key], int) or d[key] < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {d[key]!r}")
    for key in PARAMS:
        low, high = BOUNDS[key]
        if isinstance(d[key], bool) or not isinstance(d[key], (int, float)) or not low <= d[key] <= high:
            raise ValueError(f"{key} must be a number in [{low}, {high}], got {d[key]!r}")
    crit = d["confidence_criteria"]
    if not isinstance(crit, list) or not crit or list(np.sort(crit)) != list(crit) or min(crit) <= 0:
        raise ValueError(f"confidence_criteria must be a non-empty increasing list of positive numbers, got {crit!r}")
    if f["method"] not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {f['method']!r}")


def simulate(data: dict, seed: int) -> dict:
    """Trials of `nsubjects` subjects who share the generating parameters: stimuli, responses, ratings."""
    d = {**DATA_DEFAULTS, **data}
    rng = np.random.default_rng(seed)
    levels = stimulus_levels(d["stimuli_stepsize"])
    shape = (d["nsubjects"], d["nsamples"])
    s = rng.choice(levels, size=shape)
    dv = s + d["bias_sens"] + d["noise_sens"] * rng.standard_normal(shape)
    z = np.abs(dv) + d["noise_meta"] * rng.standard_normal(shape)
    return {"stimuli": s, "response": (dv > 0).astype(np.int8),
            "rating": np.searchsorted(np.asarray(d["confidence_criteria"], float), z).astype(np.int8),
            "confidence_criteria": np.asarray(d["confidence_criteria"], float),
            **{f"true_{p}": float(d[p]) for p in PARAMS}}


def cell_counts(dataset: dict, levels: np.ndarray, n_ratings: int) -> np.ndarray:
    """counts[i, r, k]: trials with stimulus level i, response r (0/1) and rating k, over all subjects."""
    s = np.asarray(dataset["stimuli"]).ravel()
    i = np.abs(s[:, None] - levels[None, :]).argmin(axis=1)
    r = np.asarray(dataset["response"]).ravel().astype(int)
    k = np.asarray(dataset["rating"]).ravel().astype(int)
    counts = np.zeros((len(levels), 2, n_ratings))
    np.add.at(counts, (i, r, k), 1)
    return counts


def type1_nll(bias: float, noise_sens: float, levels: np.ndarray, counts: np.ndarray) -> float:
    """-log L of the responses: P(r = 1 | s) = Phi((s + bias) / noise_sens)."""
    x = (levels + bias) / noise_sens
    n = counts.sum(axis=2)
    return float(-(n[:, 1] * special.log_ndtr(x) + n[:, 0] * special.log_ndtr(-x)).sum())


def rating_probabilities(bias, noise_sens, noise_meta, levels, criteria, nodes: int = QUAD_NODES) -> np.ndarray:
    """P(rating k | s_i, response r) as [i, r, k], integrating over |d| on the response's side.

    p(k, r | s) = int_0^inf phi(+-a; s + bias, noise_sens) Q_k(a) da, with Q_k(a) the probability that
    a + noise_meta * e lands between criteria k-1 and k; divided by P(r | s). Gauss-Legendre with
    `nodes` points on each piece between break points at the criteria +- 6 noise_meta and at the
    density peaks +- 6 noise_sens, so the integral stays accurate when either noise is small.
    """
    mu = levels + bias
    upper = np.abs(mu).max() + 8.0 * noise_sens
    crit = np.asarray(criteria, float)
    breaks = np.concatenate([[0.0, upper], crit - 6 * noise_meta, crit + 6 * noise_meta,
                             np.abs(mu) - 6 * noise_sens, np.abs(mu) + 6 * noise_sens])
    breaks = np.unique(np.clip(breaks, 0.0, upper))
    x, w = np.polynomial.legendre.leggauss(nodes)
    half = np.diff(breaks)[:, None] / 2
    a = ((breaks[:-1, None] + half) + half * x[None, :]).ravel()
    w = (half * w[None, :]).ravel()
    edges = np.concatenate([[-np.inf], crit, [np.inf]])
    q = np.diff(special.ndtr((edges[None, :] - a[:, None]) / noise_meta), axis=1)       # [node, k]
    dens = np.stack([np.exp(-0.5 * ((-a[None, :] - mu[:, None]) / noise_sens) ** 2),
                     np.exp(-0.5 * ((a[None, :] - mu[:, None]) / noise_sens) ** 2)], axis=1)  # [i, r, node]
    joint = np.einsum("irn,n,nk->irk", dens, w, q)
    return joint / np.maximum(joint.sum(axis=2, keepdims=True), 1e-300)


def meta_nll(noise_meta, bias, noise_sens, levels, criteria, counts, nodes=QUAD_NODES) -> float:
    """-log L of the ratings given stimuli and responses."""
    p = rating_probabilities(bias, noise_sens, noise_meta, levels, criteria, nodes)
    return float(-(counts * np.log(np.maximum(p, 1e-300))).sum())


def _minimize(fun, x0, bounds, f):
    opts = {"maxiter": f["max_iter"]}
    if f["method"] == "Nelder-Mead":
        opts.update(xatol=f["tol"], fatol=f["tol"])
    return optimize.minimize(fun, x0, method=f["method"], bounds=bounds,
                             tol=None if f["method"] == "Nelder-Mead" else f["tol"], options=opts)


def fit(dataset: dict, params: dict, seed: int) -> dict:
    """Maximum-likelihood estimates of bias_sens, noise_sens, noise_meta from starting values drawn with `seed`."""
    f = {**FIT_DEFAULTS, **params}
    rng = np.random.default_rng(seed)
    start = {"bias_sens": rng.uniform(-0.5, 0.5), "noise_sens": np.exp(rng.uniform(np.log(0.1), np.log(2.0))),
             "noise_meta": np.exp(rng.uniform(np.log(0.05), np.log(1.0)))}
    s = np.asarray(dataset["stimuli"])
    criteria = np.asarray(dataset["confidence_criteria"], float)
    levels = np.unique(s)
    counts = cell_counts(dataset, levels, len(criteria) + 1)
    log_b = [tuple(np.log(BOUNDS["noise_sens"]))]

    res1 = _minimize(lambda v: type1_nll(v[0], np.exp(v[1]), levels, counts),
                     [start["bias_sens"], np.log(start["noise_sens"])], [BOUNDS["bias_sens"], *log_b], f)
    bias, noise_sens = float(res1.x[0]), float(np.exp(res1.x[1]))
    # noise_meta on its own scale: in log scale the likelihood's plateau towards 0 stalls gradient steps
    res2 = _minimize(lambda v: meta_nll(v[0], bias, noise_sens, levels, criteria, counts, f["quad_nodes"]),
                     [start["noise_meta"]], [BOUNDS["noise_meta"]], f)
    est = {"bias_sens": bias, "noise_sens": noise_sens, "noise_meta": float(res2.x[0])}
    metrics = {**est, **{f"{p}_error": est[p] - float(dataset[f"true_{p}"]) for p in PARAMS},
               **{f"{p}_start": float(start[p]) for p in PARAMS},
               "nll_type1": float(res1.fun), "nll_meta": float(res2.fun), "nll": float(res1.fun + res2.fun),
               "converged": float(bool(res1.success) and bool(res2.success)),
               "n_evals": float(res1.nfev + res2.nfev)}
    return {"metrics": metrics}



VARIANCE_METHOD = ("one-way random-effects ANOVA (method of moments) with datasets as groups: "
                   "var_data = (MS_between - MS_within) / n0, var_fit = MS_within")


def recovery_rows(ok: list, axes: list) -> list[dict]:
    """Per swept point (values of `axes`) and parameter, over the ok runs: truth, n, mean, bias, sd, RMSE,
    convergence and the variance split."""
    points: dict = {}
    for r in ok:
        points.setdefault(tuple(r.get(a) for a in axes), []).append(r)
    rows = []
    for key, runs in sorted(points.items(), key=lambda kv: tuple(map(str, kv[0]))):
        for p in PARAMS:
            truth = np.array([r[f"data.{p}"] for r in runs], float)
            est = np.array([r[f"metrics.{p}"] for r in runs], float)
            err = est - truth
            vc = variance_components(est, [r["data_key"] for r in runs])
            rows.append({**dict(zip(axes, key)), "parameter": p, "true": float(truth.mean()), "n": len(runs),
                         "datasets": vc["groups"], "mean": float(est.mean()), "bias": float(err.mean()),
                         "sd": float(est.std(ddof=1)) if len(est) > 1 else 0.0,
                         "rmse": float(np.sqrt((err ** 2).mean())),
                         "converged": float(np.mean([r["metrics.converged"] for r in runs])),
                         "var_data": vc["var_between"], "var_fit": vc["var_within"],
                         "share_data": vc["share_between"], "method": VARIANCE_METHOD})
    return rows


def report(table, figures_dir: Path) -> list[Path]:
    """True vs recovered scatter, error vs nsamples, variance decomposition; recovery_summary.csv."""
    plt = pyplot()
    figures_dir = Path(figures_dir)
    ok = [r for r in table.to_pylist() if r.get("status") == "ok"]
    if not ok:
        return []
    paths = []
    nsamples = sorted({r["data.nsamples"] for r in ok})
    colors = dict(zip(nsamples, plt.cm.viridis(np.linspace(0.1, 0.85, len(nsamples)))))
    axes = axis_columns(table)
    fit_axes = [a for a in axes if a.startswith("fit.")]
    fig, axs = plt.subplots(1, len(PARAMS), figsize=(4.2 * len(PARAMS), 4))
    for ax, p in zip(axs, PARAMS):
        truth = np.array([r[f"data.{p}"] for r in ok], float)
        est = np.array([r[f"metrics.{p}"] for r in ok], float)
        if np.ptp(truth) > 0:  # true values swept: true vs recovered with the identity line
            jitter = np.random.default_rng(0).uniform(-1, 1, len(truth)) * 0.015 * np.ptp(truth)
            for n in nsamples:
                sel = np.array([r["data.nsamples"] == n for r in ok])
                ax.scatter(truth[sel] + jitter[sel], est[sel], s=10, alpha=0.6, color=colors[n],
                           label=f"nsamples={n}")
            lo, hi = min(truth.min(), est.min()), max(truth.max(), est.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="identity")
            ax.set_title(f"{p}  (r = {np.corrcoef(truth, est)[0, 1]:.3f})")
            ax.set_xlabel(f"true {p} (jittered)")
        else:  # one true value: the spread of the recovered values per fit setting
            by = fit_axes[0] if fit_axes else None
            cats = sorted({str(r.get(by)) for r in ok}) if by else ["all fits"]
            for i, c in enumerate(cats):
                sel = np.array([by is None or str(r.get(by)) == c for r in ok])
                x = i + np.random.default_rng(i).uniform(-0.15, 0.15, sel.sum())
                ax.scatter(x, est[sel], s=10, alpha=0.6, label=None)
                ax.annotate(f"sd={est[sel].std(ddof=1):.2g}" if sel.sum() > 1 else "", (i, est[sel].max()),
                            textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
            ax.axhline(truth[0], color="k", ls="--", lw=1, label=f"true {p}")
            ax.set_xticks(range(len(cats)), cats)
            ax.set_xlabel(by or "")
            ax.set_title(p)
        ax.set_ylabel(f"recovered {p}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Parameter recovery: {len(ok)} fits")
    fig.tight_layout()
    paths.append(figures_dir / "recovery_scatter.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if len(nsamples) > 1:
        fig, axs = plt.subplots(1, len(PARAMS), figsize=(4.2 * len(PARAMS), 3.6))
        for ax, p in zip(axs, PARAMS):
            err = {n: np.array([r[f"metrics.{p}_error"] for r in ok if r["data.nsamples"] == n]) for n in nsamples}
            ax.plot(nsamples, [np.sqrt((err[n] ** 2).mean()) for n in nsamples], "o-", label="RMSE")
            ax.plot(nsamples, [abs(err[n].mean()) for n in nsamples], "s--", label="|bias|")
            ref = np.sqrt((err[nsamples[0]] ** 2).mean()) * np.sqrt(nsamples[0] / np.array(nsamples))
            ax.plot(nsamples, ref, ":", color="gray", label="1/sqrt(n) from the first")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("nsamples (trials per subject)")
            ax.set_title(f"{p} error")
            ax.grid(alpha=0.3, which="both")
        axs[0].legend(fontsize=8)
        fig.tight_layout()
        paths.append(figures_dir / "recovery_error_vs_nsamples.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    rows = recovery_rows(ok, axes)
    paths.append(write_csv(rows, figures_dir / "recovery_summary.csv"))
    split = [r for r in rows if np.isfinite(r["var_data"]) and np.isfinite(r["var_fit"])]
    if split:
        paths.append(_variance_figure(split, axes, figures_dir / "variance_decomposition.png"))
    return paths


def _variance_figure(rows: list, axes: list, path: Path) -> Path:
    """Data vs fitting variance of each parameter at each swept point (log scale: they differ by decades)."""
    plt = pyplot()
    labels = [", ".join(f"{a.split('.')[-1]}={r[a]}" for a in axes) or "all runs" for r in rows]
    points = list(dict.fromkeys(labels))
    fig, axs = plt.subplots(1, len(PARAMS), figsize=(3.4 * len(PARAMS) + 2.5, 2.6 + 0.35 * len(points)),
                            squeeze=False, sharey=True)
    for ax, p in zip(axs[0], PARAMS):
        sel = [(lab, r) for lab, r in zip(labels, rows) if r["parameter"] == p]
        y = np.arange(len(sel))
        floor = 1e-16
        ax.barh(y - 0.2, [max(r["var_data"], floor) for _, r in sel], 0.4, label="between datasets (data)")
        ax.barh(y + 0.2, [max(r["var_fit"], floor) for _, r in sel], 0.4, label="within dataset (fitting)")
        ax.set_yticks(y, [lab for lab, _ in sel], fontsize=8)
        ax.set_xlim(left=floor)
        ax.set_xscale("log")
        ax.set_title(p)
        ax.set_xlabel("variance of the recovered value")
    handles, names = axs[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("Variance decomposition (one-way random-effects ANOVA, datasets as groups)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
