"""The (s₁, s₂, θ̃) table of a two-output 1p card against the flow's exact jets.

A 1p card trained with ``hemocoupling-train --summary-extra`` has a 2-D summary; the
workflow reads its log q from :class:`bids_app.surrogate.likelihood.LoglikTable2`.
On the summaries of one simulated hemisphere (bench_real_nuisance.py's study: fsaverage5,
TR 2 s, 300 frames, white noise, 24P confounds, true field centred at ``--theta``) this
prints: the table's build time; the time of one evaluation (value,
gradient, Hessian) at every vertex by the table and by the jets; |Δ log q| and
|Δ gradient| at the vertices' summaries over a θ̃ grid where log q is within 10 nats of
each vertex's top; and the per-vertex likelihood maximiser on that grid by both.

Example
-------
    .venv/bin/python benchmarks/bench_two_output_table.py --card CARD.json --theta 0.7
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from bench_real_nuisance import simulate_run  # noqa: E402

from bids_app.models import ONE_PARAM  # noqa: E402
from bids_app.preprocess import clean  # noqa: E402
from bids_app.surrogate import load_surrogate  # noqa: E402
from bids_app.surrogate.likelihood import LoglikTable2, flow_loglik  # noqa: E402

TR, N_FRAMES = 2.0, 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, required=True)
    parser.add_argument("--theta", type=float, default=0.7,
                        help="centre of the true field, 1/s")
    parser.add_argument("--vertices", type=int, default=2000,
                        help="vertices compared on the θ̃ grid (the jets are slow)")
    parser.add_argument("--n-s", type=int, help="table grid per summary axis (default: the "
                                                "workflow's)")
    args = parser.parse_args()
    surrogate = load_surrogate("1p", TR, N_FRAMES, card_path=args.card)
    level = float(ONE_PARAM.to_latent(np.array([[args.theta]]))[0, 0])
    *_, y, confounds = simulate_run("fsaverage5", TR, N_FRAMES, "white", 0, level)
    y = clean(y, TR, surrogate.preprocessing, confounds)
    n_reg = confounds.shape[1]
    summaries = surrogate.summarize(y, TR, n_reg)
    proto = surrogate.context_protocol(surrogate.protocol(TR, N_FRAMES, n_reg))
    vec = surrogate.conditioning(proto, None)

    started = time.process_time()
    table = LoglikTable2(surrogate.flow, vec, **({"n_s": args.n_s} if args.n_s else {}))
    build = time.process_time() - started
    fast, exact = table.bind(summaries), flow_loglik(surrogate.flow, summaries, vec, 1)
    theta_t = summaries[:, :1].astype(float)
    timings = {}
    for name, fn in (("table", fast), ("jets", exact)):
        started = time.process_time()
        fn(theta_t)
        timings[name] = time.process_time() - started
    print(f"{args.card.name}, {len(y)} vertices, TR {TR} s, {N_FRAMES} frames, true θ centre "
          f"{args.theta}: table {table.s_grids[0].size}² × {table.theta_grid.size} built in "
          f"{build:.1f} "
          f"CPU-s; one evaluation (value, gradient, Hessian) at every vertex: table "
          f"{timings['table']:.3f} CPU-s, jets {timings['jets']:.2f} CPU-s")

    rows = np.random.default_rng(1).choice(len(y), min(args.vertices, len(y)), replace=False)
    grid = np.linspace(-3.0, 3.0, 121)
    fast, exact = table.bind(summaries[rows]), flow_loglik(surrogate.flow, summaries[rows],
                                                            vec, 1)
    values = {"table": [], "jets": []}
    grads = {"table": [], "jets": []}
    for g in grid:
        at = np.full((len(rows), 1), g)
        for name, fn in (("table", fast), ("jets", exact)):
            value, grad, _ = fn(at)
            values[name].append(value)
            grads[name].append(grad[:, 0])
    v_t, v_j = np.array(values["table"]), np.array(values["jets"])
    g_t, g_j = np.array(grads["table"]), np.array(grads["jets"])
    bulk = v_j > v_j.max(axis=0) - 10.0
    err, gerr = np.abs(v_t - v_j)[bulk], np.abs(g_t - g_j)[bulk]
    arg_t, arg_j = grid[v_t.argmax(axis=0)], grid[v_j.argmax(axis=0)]
    print(f"{len(rows)} vertices × {grid.size} θ̃ in [−3, 3], where log q is within 10 nats "
          f"of the vertex's top: |Δ log q| median {np.median(err):.1e}, 99th pct "
          f"{np.percentile(err, 99):.1e}, max {err.max():.1e}; |Δ gradient| median "
          f"{np.median(gerr):.1e}, 99th pct {np.percentile(gerr, 99):.1e}")
    print(f"per-vertex likelihood maximiser on the grid (step {grid[1] - grid[0]:.2f}): "
          f"equal at {np.mean(arg_t == arg_j):.3f} of vertices, |difference| max "
          f"{np.abs(arg_t - arg_j).max():.2f} latent; mean table {arg_t.mean():+.3f}, jets "
          f"{arg_j.mean():+.3f}")


if __name__ == "__main__":
    main()
