#!/usr/bin/env python3
"""Seed-by-seed comparison of two configurations from candidate-score CSVs.

Reads the CSVs that docs/benchmarks.md commits under docs/bench/ (columns config, seed,
env_step, model_return and real_100 or real_score: one row per evaluated policy of a run, as
written by tools/bench/candidate_scores.sh and fishery3_scores.sh), pairs the runs of
configurations A and B on the same seed, and prints a markdown table of the pairs and the
paired statistics the benchmark notes quote, so a reader can recompute them from the committed
data alone.

For each run: "deployed" is the real score (100 episodes) of the candidate with the highest
model_return (the run's own model chooses, no env steps), "best" the highest real score,
"final" the real score of the last candidate.

A config name matches a row when it equals the row's config or the row's config is that name
followed by a parenthesised remark, e.g. `mbpo-single-sn+robust (default)`. A file without a
config column is given as NAME=PATH: all its rows belong to NAME.

    python3 tools/bench/paired_compare.py --a mbpo-single-sn+robust --b mbpo-ensemble \
        docs/bench/cartpole-swingup_session3[789]_model_select.csv \
        docs/bench/cartpole-swingup_session*_ensemble_heldout.csv
    python3 tools/bench/paired_compare.py --a default --b ensemble \
        default=docs/bench/fishery3_session32_model_select.csv ... \
        ensemble=docs/bench/fishery3_session40_ensemble.csv ...

Standard library only.
"""

import argparse
import csv
import math
import statistics as st
import sys


def matches(config, name):
    return config == name or config.startswith(name + " (")


def load(paths, name):
    """{seed: {env_step: (model_return, real score)}} for the runs of `name`.

    A seed may come from one file only."""
    runs, source = {}, {}
    for spec in paths:
        owner, _, path = spec.rpartition("=")
        if owner and owner != name:
            continue
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if not owner and "config" not in fields:
                sys.exit(f"{path}: no config column; name its runs as NAME={path}")
            real = "real_100" if "real_100" in fields else "real_score"
            for line, row in enumerate(reader, start=2):
                if not owner and not matches(row["config"], name):
                    continue
                try:
                    seed, step = int(row["seed"]), int(row["env_step"])
                    scores = (float(row["model_return"]), float(row[real]))
                except (KeyError, ValueError) as e:
                    sys.exit(f"{path}:{line}: bad row for {name!r}: {e}")
                if source.setdefault(seed, path) != path:
                    sys.exit(f"{path}:{line}: seed {seed} of {name!r} is already in {source[seed]}")
                runs.setdefault(seed, {})[step] = scores
    return runs


def summarise(run):
    chosen = max(sorted(run), key=lambda s: run[s][0])
    return {
        "deployed": run[chosen][1],
        "step": chosen,
        "best": max(v[1] for v in run.values()),
        "final": run[max(run)][1],
    }


def t_quantile_975(df):
    """Two-sided 95% quantile of Student's t with `df` degrees of freedom (Simpson + bisection)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf_above_zero(x, n=2000):
        h = x / n
        pdf = lambda t: c * (1 + t * t / df) ** (-(df + 1) / 2)  # noqa: E731
        inner = sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
        return h / 3 * (pdf(0) + inner + pdf(x))

    lo, hi = 0.0, 50.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf_above_zero(mid) < 0.475 else (lo, mid)
    return (lo + hi) / 2


def sign_test(diffs):
    """Two-sided exact sign test on the nonzero differences."""
    n = sum(d != 0 for d in diffs)
    k = sum(d > 0 for d in diffs)
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="config compared (differences are A - B)")
    ap.add_argument("--b", required=True, help="config compared against")
    ap.add_argument("csv", nargs="+", help="PATH, or NAME=PATH for a file without a config column")
    ap.add_argument("--check-doc", metavar="MD",
                    help="fail unless MD quotes the deployed comparison's mean, standard error and "
                         "95%% interval, and A's mean ± sd over all its seeds, as printed here (so "
                         "a doc cannot drift from its data)")
    args = ap.parse_args()
    a, b = load(args.csv, args.a), load(args.csv, args.b)
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        sys.exit(f"need at least two seeds run by both {args.a!r} and {args.b!r}; found {seeds}")
    sa = {s: summarise(run) for s, run in a.items()}
    sb = {s: summarise(b[s]) for s in seeds}

    print(f"| seed | {args.a}: deployed (step) | {args.b}: deployed (step) | A - B |")
    print("|---|---|---|---|")
    for s in seeds:
        x, y = sa[s], sb[s]
        print(f"| {s} | {x['deployed']:.2f} ({x['step']:,}) | {y['deployed']:.2f} ({y['step']:,}) "
              f"| {x['deployed'] - y['deployed']:+.2f} |")
    print()
    t = t_quantile_975(len(seeds) - 1)
    quoted = None
    for key in ("deployed", "best", "final"):
        xs, ys = [sa[s][key] for s in seeds], [sb[s][key] for s in seeds]
        d = [x - y for x, y in zip(xs, ys)]
        m, se = st.mean(d), st.stdev(d) / math.sqrt(len(d))
        print(f"- {key}, seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} pairs): A {st.mean(xs):.2f} ± "
              f"{st.stdev(xs):.2f}, B {st.mean(ys):.2f} ± {st.stdev(ys):.2f}; A - B {m:+.2f} a seed "
              f"(paired standard error {se:.2f}, median {st.median(d):+.2f}), A ahead on "
              f"{sum(v > 0 for v in d)} of {len(d)} (sign test p = {sign_test(d):.2f}); 95% t "
              f"interval {m - t * se:+.2f} to {m + t * se:+.2f}")
        if key == "deployed":
            quoted = [f"{m:+.2f} a seed (paired standard error {se:.2f}",
                      f"{m - t * se:+.2f} to {m + t * se:+.2f}"]
    alone = sorted(set(a) - set(b))
    if alone:
        print(f"- {args.a} alone on seeds {alone}: deployed "
              + ", ".join(f"{sa[s]['deployed']:.2f}" for s in alone))
    every = [v["deployed"] for v in sa.values()]
    spread = f"{st.mean(every):.2f} ± {st.stdev(every):.2f}"
    print(f"- {args.a} over all its {len(every)} seeds: deployed {spread}")
    quoted.append(spread)
    if args.check_doc:
        with open(args.check_doc) as f:
            doc = f.read()
        missing = [q for q in quoted if q not in doc]
        if missing:
            sys.exit(f"{args.check_doc}: does not quote {missing} ({args.a} against {args.b}, "
                     f"seeds {seeds[0]}-{seeds[-1]}); update it from the output above")
        print(f"{args.check_doc} quotes {quoted}")


if __name__ == "__main__":
    main()
