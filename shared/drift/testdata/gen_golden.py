#!/usr/bin/env python3
"""Generate golden drift statistics for shared/drift tests with SciPy.

Samples come from a generator that the Go test reimplements bit for bit (SplitMix64 uniforms;
Box-Muller normals; inverse-CDF exponentials and categoricals), so the Go side rebuilds the
same samples from the specs stored here and the test needs no Python.

Exact values: scipy.stats.ks_2samp (D and p), scipy.stats.wasserstein_distance, numpy.std
(population), PSI over reference deciles (numpy.quantile method="inverted_cdf", zero shares
replaced by 1e-4), and for categoricals scipy.stats.chisquare(observed, expected) with expected =
reference share x current count (Evidently's construction) and
scipy.spatial.distance.jensenshannon of the two share vectors (natural log).

Run: python3 gen_golden.py > golden.json  (Debian: apt-get install python3-scipy python3-numpy)
"""
import json
import math

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance

MASK = (1 << 64) - 1


def splitmix(seed):
    state = seed & MASK
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z = z ^ (z >> 31)
        yield (z >> 11) * (1.0 / (1 << 53))


def sample(spec):
    """spec: dist, n, seed, and loc/scale (numeric) or probs (categorical)."""
    # Spread small seeds over the state space so that neighbouring seeds give unrelated streams.
    u = splitmix((spec["seed"] * 0xD1B54A32D192ED03) & MASK)
    n = spec["n"]
    d = spec["dist"]
    out = []
    if d == "normal":
        for _ in range(n):
            u1, u2 = 1.0 - next(u), next(u)
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
            out.append(spec["loc"] + spec["scale"] * z)
    elif d == "exponential":
        for _ in range(n):
            out.append(spec["loc"] - spec["scale"] * math.log(1.0 - next(u)))
    elif d == "rounded":  # normal rounded to a grid: many ties
        for _ in range(n):
            u1, u2 = 1.0 - next(u), next(u)
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
            out.append(float(round(spec["loc"] + spec["scale"] * z)))
    elif d == "categorical":
        cum = np.cumsum(spec["probs"])
        for _ in range(n):
            x = next(u)
            i = 0
            while i < len(cum) - 1 and x >= cum[i]:
                i += 1
            out.append(i)
    else:
        raise ValueError(d)
    return out


def psi(ref, cur):
    ref = np.sort(np.asarray(ref))
    cur = np.sort(np.asarray(cur))
    edges = np.unique(np.quantile(ref, [i / 10 for i in range(1, 10)], method="inverted_cdf"))

    def shares(x):
        cum = np.searchsorted(x, edges, side="right") / len(x)
        cum = np.concatenate([[0.0], cum, [1.0]])
        s = np.diff(cum)
        return np.where(s == 0, 1e-4, s)

    r, c = shares(ref), shares(cur)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_case(name, ref, cur):
    a, b = sample(ref), sample(cur)
    ks = stats.ks_2samp(a, b)
    w = stats.wasserstein_distance(a, b)
    sd = float(np.std(a))
    return {
        "name": name, "kind": "numeric", "ref": ref, "cur": cur,
        "ks_d": float(ks.statistic), "ks_p": float(ks.pvalue),
        "wasserstein": float(w), "ref_std": sd, "wasserstein_norm": float(w / max(sd, 0.001)),
        "psi": psi(a, b), "ref_sum": float(np.sum(a)), "cur_sum": float(np.sum(b)),
    }


def categorical_case(name, ref, cur):
    a, b = sample(ref), sample(cur)
    k = max(len(ref["probs"]), len(cur["probs"]))
    ca = np.bincount(a, minlength=k).astype(float)
    cb = np.bincount(b, minlength=k).astype(float)
    keep = (ca > 0) | (cb > 0)
    ca, cb = ca[keep], cb[keep]
    expected = ca / ca.sum() * cb.sum()
    chi = stats.chisquare(cb, expected)
    js = distance.jensenshannon(ca / ca.sum(), cb / cb.sum())
    return {
        "name": name, "kind": "categorical", "ref": ref, "cur": cur,
        "chi_stat": float(chi.statistic), "chi_p": float(chi.pvalue), "jensenshannon": float(js),
        "ref_sum": float(np.sum(a)), "cur_sum": float(np.sum(b)),
    }


def main():
    cases = []
    seed = 1
    for n in (1000, 10000, 100000):
        for shift in (0.0, 0.05, 0.1, 0.3):
            for m in sorted({n, 1000, 5000}):
                ref = {"dist": "normal", "n": n, "seed": seed, "loc": 20.0, "scale": 4.0}
                cur = {"dist": "normal", "n": m, "seed": seed + 1, "loc": 20.0 + 4.0 * shift, "scale": 4.0}
                cases.append(numeric_case(f"normal n={n} m={m} shift={shift}", ref, cur))
                seed += 2
        ref = {"dist": "exponential", "n": n, "seed": seed, "loc": 0.0, "scale": 2.0}
        cur = {"dist": "exponential", "n": n, "seed": seed + 1, "loc": 0.0, "scale": 2.3}
        cases.append(numeric_case(f"exponential n={n} scale", ref, cur))
        ref = {"dist": "rounded", "n": n, "seed": seed + 2, "loc": 50.0, "scale": 3.0}
        cur = {"dist": "rounded", "n": n, "seed": seed + 3, "loc": 50.5, "scale": 3.0}
        cases.append(numeric_case(f"rounded n={n} ties", ref, cur))
        ref = {"dist": "normal", "n": n, "seed": seed + 4, "loc": 0.0, "scale": 1.0}
        cur = {"dist": "normal", "n": n, "seed": seed + 5, "loc": 0.0, "scale": 1.4}
        cases.append(numeric_case(f"normal n={n} variance", ref, cur))
        seed += 6
    base = [0.4, 0.3, 0.2, 0.1]
    for n in (200, 1000, 10000):
        for name, probs in (("same", base), ("slight", [0.38, 0.31, 0.2, 0.11]),
                            ("swap", [0.1, 0.3, 0.2, 0.4])):
            ref = {"dist": "categorical", "n": n, "seed": seed, "probs": base}
            cur = {"dist": "categorical", "n": n, "seed": seed + 1, "probs": probs}
            cases.append(categorical_case(f"categorical n={n} {name}", ref, cur))
            seed += 2
    many = list(np.full(100, 0.01))
    ref = {"dist": "categorical", "n": 20000, "seed": seed, "probs": many}
    cur = {"dist": "categorical", "n": 5000, "seed": seed + 1, "probs": many}
    cases.append(categorical_case("categorical 100 values", ref, cur))
    json.dump({"generator": "gen_golden.py", "scipy": scipy.__version__, "numpy": np.__version__,
               "cases": cases}, __import__("sys").stdout, indent=1)


if __name__ == "__main__":
    main()
