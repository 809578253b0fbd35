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
from typing import Literal

import numpy as np
from pydantic import Field, field_validator
from scipy import optimize, special

from sweeper import Finding, Params, RunStatus, Study
from sweeper.toolkit import key_of, pyplot, variance_components, write_csv

VERSION = "1"

PARAMS = ("bias_sens", "noise_sens", "noise_meta")
QUAD_NODES = 24  # Gauss-Legendre nodes per piece of the confidence integral
BOUNDS = {"bias_sens": (-2.0, 2.0), "noise_sens": (1e-3, 10.0), "noise_meta": (1e-3, 10.0)}


class DataParams(Params):
    """The simulated observers: the generating (true) parameters and the design."""

    stimuli_stepsize: float = Field(0.25, gt=0, le=1, description="stimuli on a grid in [-1, 1] with this step")
    nsamples: int = Field(1000, ge=1, description="trials per subject")
    nsubjects: int = Field(1, ge=1)
    bias_sens: float = Field(0.0, ge=BOUNDS["bias_sens"][0], le=BOUNDS["bias_sens"][1])
    noise_sens: float = Field(0.5, ge=BOUNDS["noise_sens"][0], le=BOUNDS["noise_sens"][1])
    noise_meta: float = Field(0.2, ge=BOUNDS["noise_meta"][0], le=BOUNDS["noise_meta"][1])
    confidence_criteria: list[float] = Field([0.3, 0.6, 0.9], min_length=1, description="known to the fit")

    @field_validator("stimuli_stepsize")
    @classmethod
    def _divides_two(cls, v):
        if abs(2 / v - round(2 / v)) > 1e-9:
            raise ValueError(f"must divide 2 (e.g. 0.25, 0.5), got {v!r}")
        return v

    @field_validator("confidence_criteria")
    @classmethod
    def _increasing(cls, v):
        if sorted(v) != v or min(v) <= 0 or len(set(v)) < len(v):
            raise ValueError(f"must be increasing positive numbers, got {v!r}")
        return v


class FitParams(Params):
    """The maximum-likelihood fit."""

    method: Literal["L-BFGS-B", "Nelder-Mead", "Powell", "TNC"] = "L-BFGS-B"
    tol: float = Field(1e-9, gt=0)
    max_iter: int = Field(500, ge=1)
    quad_nodes: int = Field(QUAD_NODES, ge=2, description="Gauss-Legendre nodes per piece of the confidence integral")


def stimulus_levels(stepsize: float) -> np.ndarray:
    """The stimulus grid on [-1, 1] with the given step (both ends included)."""
    n = int(round(2.0 / stepsize))
    return np.linspace(-1.0, 1.0, n + 1)


def simulate(data: dict, seed: int) -> dict:
    """Trials of `nsubjects` subjects who share the generating parameters: stimuli, responses, ratings."""
    d = DataParams.model_validate(data).model_dump()
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
    f = FitParams.model_validate(params).model_dump()
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


def _points(result, axes: list) -> dict:
    """The ok runs grouped by their values of `axes`: {key: (values, runs)}."""
    points: dict = {}
    for r in result.runs(RunStatus.OK):
        points.setdefault(key_of([r[a] for a in axes]), ([r[a] for a in axes], []))[1].append(r)
    return points


def recovery_rows(result) -> list[dict]:
    """Per configuration and parameter: truth, n, datasets, mean recovered value and bias with 95% CIs (over
    dataset means; none with one dataset), sd, RMSE, convergence and the variance split."""
    axes = result.axes
    stats = {key_of([c.axes[a] for a in axes]): c
             for c in result.configs([m for p in PARAMS for m in (p, f"{p}_error")], by=axes)}
    rows = []
    for key, (values, runs) in _points(result, axes).items():
        cfg = stats[key]
        for p in PARAMS:
            truth = np.array([r[f"data.{p}"] for r in runs], float)
            err = np.array([r[f"metrics.{p}"] for r in runs], float) - truth
            vc = variance_components(truth + err, [r["data_key"] for r in runs])
            bias = cfg.stat(f"{p}_error")
            several = cfg.n_datasets > 1
            rows.append({**dict(zip(axes, values)), "parameter": p, "true": float(truth.mean()), "n": len(runs),
                         "datasets": cfg.n_datasets, "mean": cfg.stat(p).mean, "bias": bias.mean,
                         "bias_ci_low": bias.low if several else np.nan, "bias_ci_high": bias.high if several else np.nan,
                         "sd": float(err.std(ddof=1)) if len(err) > 1 else np.nan,
                         "rmse": float(np.sqrt((err ** 2).mean())),
                         "converged": float(np.mean([r["metrics.converged"] for r in runs])),
                         "var_data": vc["var_between"], "var_fit": vc["var_within"],
                         "share_data": vc["share_between"], "method": VARIANCE_METHOD})
    return rows


def report(result, figures_dir: Path) -> list[Path]:
    """Recovered vs true (a row per nsamples), error and bias vs nsamples, the variance split;
    recovery_summary.csv."""
    figures_dir = Path(figures_dir)
    if not result.counts()["ok"]:
        return []
    paths = [_scatter(result, figures_dir / "recovery_scatter.png")]
    if len(result.levels("data.nsamples") if "data.nsamples" in result.axes else []) > 1:
        paths.append(_error_vs_nsamples(result, figures_dir / "recovery_error_vs_nsamples.png"))
    rows = recovery_rows(result)
    paths.append(write_csv(rows, figures_dir / "recovery_summary.csv"))
    split = [r for r in rows if np.isfinite(r["var_data"]) and np.isfinite(r["var_fit"])]
    if split:
        paths.append(_variance_figure(split, result.axes, figures_dir / "variance_decomposition.png"))
    return paths


def _scatter(result, path: Path) -> Path:
    """Recovered against true value, a row per nsamples. Fits of one dataset share an x offset and are
    spread around it (jitter, transparency) instead of stacking; without a swept truth, x is the fit setting."""
    plt = pyplot()
    ok = result.runs(RunStatus.OK)
    nsamples = sorted({r["data.nsamples"] for r in ok})
    fit_axes = [a for a in result.axes if a.startswith("fit.")]
    cats = list(dict.fromkeys(tuple(r.get(a) for a in fit_axes) for r in ok))
    fig, axs = plt.subplots(len(nsamples), len(PARAMS), figsize=(4.2 * len(PARAMS), 3.4 * len(nsamples)),
                            squeeze=False)
    rng = np.random.default_rng(1)
    for row, n in enumerate(nsamples):
        runs = [r for r in ok if r["data.nsamples"] == n]
        for ax, p in zip(axs[row], PARAMS):
            truth = np.array([r[f"data.{p}"] for r in runs], float)
            est = np.array([r[f"metrics.{p}"] for r in runs], float)
            swept = np.ptp([r[f"data.{p}"] for r in ok]) > 0
            base = truth if swept else np.array([cats.index(tuple(r.get(a) for a in fit_axes)) for r in runs], float)
            width = 0.02 * np.ptp(truth) if swept else 0.15
            offset = _dataset_offsets(runs, base)
            x = base + width * (np.array([offset[r["data_key"], b] for r, b in zip(runs, base)])
                                + 0.25 * rng.uniform(-1, 1, len(runs)))
            ax.scatter(x, est, s=9, alpha=0.45, color=f"C{row}", lw=0)
            if swept:
                lo, hi = min(truth.min(), est.min()), max(truth.max(), est.max())
                ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="identity")
                ax.set_xlabel(f"true {p}")
                ax.set_title(f"{p}, nsamples={n}: r = {np.corrcoef(truth, est)[0, 1]:.3f}", fontsize=9)
            else:
                ax.axhline(truth[0], color="k", ls="--", lw=1, label=f"true {p}")
                ax.set_xticks(range(len(cats)), [", ".join(map(str, c)) or "all fits" for c in cats])
                ax.set_xlabel(", ".join(fit_axes))
                ax.set_title(f"{p}, nsamples={n}", fontsize=9)
            ax.set_ylabel(f"recovered {p}")
            ax.grid(alpha=0.3)
    axs[0, 0].legend(fontsize=8)
    n_data = len({r["data_key"] for r in ok})
    fig.suptitle(f"Parameter recovery: {len(ok)} fits of {n_data} dataset(s); each point one fit, the fits of one "
                 "dataset spread side by side (jitter)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _dataset_offsets(runs: list, base) -> dict:
    """{(data key, x): offset in [-1, 1]}: the datasets at one x spread evenly, a single one centred."""
    at: dict = {}
    for r, b in zip(runs, base):
        at.setdefault(b, {})[r["data_key"]] = None
    out = {}
    for b, keys in at.items():
        spread = np.linspace(-1, 1, len(keys)) if len(keys) > 1 else [0.0]
        out.update({(k, b): float(o) for k, o in zip(keys, spread)})
    return out


def _error_vs_nsamples(result, path: Path) -> Path:
    """RMSE (log) and bias with its 95% CI (over dataset means) against nsamples, a line per fit setting."""
    plt = pyplot()
    fit_axes = [a for a in result.axes if a.startswith("fit.")]
    by = ["data.nsamples", *fit_axes]
    cfgs = result.configs([f"{p}_error" for p in PARAMS], by=by)
    points = _points(result, by)
    fig, axs = plt.subplots(2, len(PARAMS), figsize=(4.2 * len(PARAMS), 6.4), squeeze=False)
    for j, p in enumerate(PARAMS):
        for k, setting in enumerate(dict.fromkeys(tuple(c.axes[a] for a in fit_axes) for c in cfgs)):
            sel = sorted((c for c in cfgs if tuple(c.axes[a] for a in fit_axes) == setting and c.n),
                         key=lambda c: c.axes["data.nsamples"])
            n = np.array([c.axes["data.nsamples"] for c in sel], float)
            rmse = [np.sqrt(np.mean([r[f"metrics.{p}_error"] ** 2 for r in points[key_of([c.axes[a] for a in by])][1]]))
                    for c in sel]
            bias = np.array([c.stat(f"{p}_error").mean for c in sel])
            err = np.nan_to_num(np.vstack([bias - [c.stat(f"{p}_error").low for c in sel],
                                           [c.stat(f"{p}_error").high for c in sel] - bias]), nan=0.0)
            label = ", ".join(f"{a.split('.')[-1]}={v}" for a, v in zip(fit_axes, setting)) or "all fits"
            axs[0, j].plot(n, rmse, "o-", color=f"C{k}", label=label)
            axs[1, j].errorbar(n * (1 + 0.03 * k), bias, yerr=err, marker="s", capsize=3, color=f"C{k}", label=label)
        axs[0, j].set(xscale="log", yscale="log", title=f"{p}: RMSE", xlabel="nsamples (trials per subject)")
        axs[1, j].axhline(0, color="k", lw=0.8)
        axs[1, j].set(xscale="log", title=f"{p}: bias, 95% CI", xlabel="nsamples (trials per subject)")
        for ax in axs[:, j]:
            ax.grid(alpha=0.3, which="both")
    axs[0, 0].legend(fontsize=8)
    pooled = cfgs[0].averaged_over
    fig.suptitle("Recovery error against the number of trials" + (f"; averaged over {pooled}" if pooled else "")
                 + "; bias CI: Student t over dataset means", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _variance_figure(rows: list, axes: list, path: Path) -> Path:
    """The share of each recovered parameter's variance that is between datasets (data) and within a dataset
    (fitting), on a linear 0-100% scale so a part of ~0 is drawn as ~0; the variances are written beside."""
    plt = pyplot()
    labels = [", ".join(f"{a.split('.')[-1]}={r[a]}" for a in axes) or "all runs" for r in rows]
    points = list(dict.fromkeys(labels))
    fig, axs = plt.subplots(1, len(PARAMS), figsize=(4.2 * len(PARAMS) + 2.5, 2.6 + 0.4 * len(points)),
                            squeeze=False, sharey=True)
    for ax, p in zip(axs[0], PARAMS):
        sel = [(lab, r) for lab, r in zip(labels, rows) if r["parameter"] == p]
        y = np.arange(len(sel))
        total = np.array([r["var_data"] + r["var_fit"] for _, r in sel])
        data = np.array([r["var_data"] for _, r in sel]) / np.where(total > 0, total, 1)
        ax.barh(y, data, label="between datasets (data)")
        ax.barh(y, 1 - data, left=data, label="within a dataset (fitting)")
        for yi, (_, r) in zip(y, sel):
            ax.text(1.02, yi, f"data {r['var_data']:.1e}\nfit {r['var_fit']:.1e}", va="center", fontsize=7)
        ax.set_yticks(y, [lab for lab, _ in sel], fontsize=8)
        ax.set_xlim(0, 1.45)
        ax.set_xticks([0, 0.5, 1], ["0", "50%", "100%"])
        ax.set_title(p)
        ax.set_xlabel("share of the variance")
    handles, names = axs[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("Variance decomposition (one-way random-effects ANOVA, datasets as groups)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


METRICS = (*PARAMS, *(f"{p}_error" for p in PARAMS), *(f"{p}_start" for p in PARAMS), "nll_type1", "nll_meta", "nll",
           "converged", "n_evals")  # what fit reports, declared so a precision or finding typo fails at load
study = Study("parameter_recovery", simulate, fit, data_params=DataParams, fit_params=FitParams, version=VERSION,
              metrics=METRICS,
              report=report, description="Does maximum likelihood recover the parameters of a signal-detection "
              "model of perception and confidence, and is the spread data variance or fitting variance?",
              findings=(*(Finding(f"metrics.{p}_error", by=("data.nsamples", "fit.method"))
                          for p in ("bias_sens", "noise_sens", "noise_meta")),
                        Finding("metrics.noise_meta_error", "fit.method", "L-BFGS-B")))
