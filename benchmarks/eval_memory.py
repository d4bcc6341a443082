"""Peak memory of the evaluation metrics against the number of test vectors.

    python benchmarks/eval_memory.py [--vectors 1000 10000] [--dim 1024] [--samples 0 16] [--bound-gb 2]

Each case runs in a fresh process that feeds `n` test vectors of dimension `d` into the pool `wmfactory eval`
scores (`eval/report.py`: the target, the model's prediction and the four baselines, as float32 and, for the ridge,
float64; with `--samples`, S draws of every forecaster, as `eval --num_samples` gives them), then scores it: MSE,
MAE, cosine, L2, the contrastive accuracy (every prediction against every target) and, with samples, the CRPS, the
energy score, coverage and PIT. The process reports its peak resident memory (`getrusage`), and its memory after
the imports, before any vector. The script exits non-zero when a case with `--bound-vectors` vectors or fewer
exceeds the bound. The pool keeps the points (n x d per forecaster, which the contrastive accuracy needs); every
metric works block by block, so nothing else grows with n."""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def child(vectors: int, dim: int, samples: int) -> dict:
    import numpy as np

    from wmfactory.eval.metrics import BASELINES
    from wmfactory.eval.report import _Pool

    before = peak_rss_bytes()
    rng = np.random.default_rng(0)
    pool, mean = _Pool(), rng.normal(size=dim).astype(np.float32)
    start = time.perf_counter()
    for number in range(vectors):
        previous = rng.normal(size=dim).astype(np.float32)
        target = (previous + 0.1 * rng.normal(size=dim)).astype(np.float32)
        points = {"persistence": previous, "linear_extrapolation": previous + 0.1, "training_mean": mean,
                  "ridge": previous.astype(np.float64) + 0.05}
        draws = None
        if samples:
            draws = {"model": (target + 0.1 * rng.normal(size=(samples, dim))).astype(np.float32)}
            draws.update({name: point[None] + 0.1 * rng.normal(size=(samples, dim)) for name, point in points.items()})
        pool.add(number // 4, target, target + np.float32(0.05), points, draws)  # 4 vectors per row
    result = pool.score()
    seconds = time.perf_counter() - start
    assert set(BASELINES) <= set(result) and result["vectors"] == vectors
    return {"vectors": vectors, "dim": dim, "samples": samples, "peak_rss_gb": peak_rss_bytes() / 1e9,
            "rss_after_imports_gb": before / 1e9, "seconds": seconds,
            "model_contrastive_accuracy": result["model"]["contrastive_accuracy"],
            "model_crps": result["model"].get("crps")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--samples", type=int, nargs="+", default=[0, 16])
    parser.add_argument("--bound-gb", type=float, default=2.0)
    parser.add_argument("--bound-vectors", type=int, default=10000)
    parser.add_argument("--child", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'vectors':>8} {'d':>5} {'S':>3} {'peak RSS':>10} {'after imports':>14} {'seconds':>8}")
    failed = False
    for samples in args.samples:
        for vectors in args.vectors:
            command = [sys.executable, os.path.abspath(__file__), "--child", str(vectors), str(args.dim), str(samples)]
            line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            row = json.loads(line)
            over = row["peak_rss_gb"] >= args.bound_gb and vectors <= args.bound_vectors
            failed |= over
            print(f"{vectors:>8} {args.dim:>5} {samples:>3} {row['peak_rss_gb']:>8.2f} GB "
                  f"{row['rss_after_imports_gb']:>11.2f} GB {row['seconds']:>8.1f}" + ("  OVER THE BOUND" if over else ""))
    print(f"bound: peak RSS under {args.bound_gb} GB up to {args.bound_vectors} vectors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
