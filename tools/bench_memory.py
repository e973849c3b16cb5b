"""Where the peak RSS of ``hasherd train`` on 1,000 records comes from, stage by stage.

    .venv/bin/python tools/bench_memory.py [--json]

A child process takes the stages of a training run one at a time and reads its resident
set (VmRSS) after each: the interpreter, each heavy import in the order the command loads
it, numba's run-time set-up (the first compiled function loaded from the cache), the
kernel module, the kernels themselves, and the training run (its peak, VmHWM). It runs
twice: as the environment is (with ``PYTHONDONTWRITEBYTECODE`` set, every process
compiles the 460 KB generated lane module from source), and with the package's bytecode
compiled beforehand into a private cache (``-X pycache_prefix``; an installed package
normally has it). The closing lines say what would move the floor. About 30 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# Run in the child: each stage, then VmRSS; the last line is the training run's peak.
CHILD = r"""
import importlib, json, re, sys
def rss():
    text = open("/proc/self/status").read()
    return [int(re.search(k + r":\s+(\d+)", text)[1]) / 1024 for k in ("VmRSS", "VmHWM")]
out = [["interpreter", *rss()]]
def stage(name, fn):
    fn()
    out.append([name, *rss()])
for mod in ("numpy", "llvmlite.binding", "numba", "aiosqlite", "anyio"):
    stage(mod, lambda: importlib.import_module(mod))
stage("hasherd train's other imports", lambda: importlib.import_module("hasherd.cli.main"))
def numba_runtime():
    import numpy as np
    from hasherd.training import steps
    steps.seed_hashes(np.zeros((1, 4), dtype=np.uint64))
stage("numba run-time set-up (first cached function)", numba_runtime)
def kernel_module():
    from hasherd.kernel.evaluators import numba_cpu
    numba_cpu.kernels()
stage("kernel module (generated lane code)", kernel_module)
def kernels():
    from hasherd.backends import create
    create("numba").warm_up()
stage("kernels loaded from the cache", kernels)
def search():
    from hasherd.training import search
    search.warm_up()
stage("search steps loaded", search)
def train():
    from hasherd.cli.main import main
    main(sys.argv[1:])
stage("training 1,000 records (peak)", train)
heavy = ("pyarrow", "tiktoken", "pypdf", "rich", "pandas", "scipy")
print(json.dumps({"stages": out, "loaded": [m for m in heavy if m in sys.modules]}))
"""

NOTES = [
    "numpy, llvmlite and numba are the floor: numba needs LLVM in the process to load its "
    "cached machine code, and its run-time set-up (typing and lowering registries, the "
    "code generator) is paid once, at the first compiled function, whatever is compiled; "
    "only kernels built ahead of time (a C extension, no numba at run time) would remove "
    "it.",
    "the kernels themselves (their cached machine code) add little once numba is set up.",
    "bytecode: without a .pyc each process compiles the generated lane module, and its "
    "peak keeps the parser's memory; an installed package (pip byte-compiles) avoids it.",
    "pyarrow, tiktoken and pypdf are imported only when a Parquet, text or PDF input "
    "needs them, so a JSON training run does not carry them.",
    "what remains is the run itself: the dataset, 64 records' searches in flight, the "
    "numba worker threads and SQLite's page cache.",
]


def frames(path: Path) -> None:
    rng = np.random.default_rng(4)
    rows = [
        {
            "feature_vector": rng.integers(0, 2**32, 12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 100_000)),
        }
        for _ in range(1000)
    ]
    path.write_text(json.dumps(rows))


def measure(tmp: Path, pycache: Path | None) -> dict[str, Any]:
    db = tmp / ("c.db" if pycache else "p.db")
    args = ["train", "--data", str(tmp / "k.json"), "--db", str(db)]
    args += ["--epochs", "1", "--difficulty-bits", "8", "--seed", "1"]
    opts = ["-X", f"pycache_prefix={pycache}"] if pycache else []
    done = subprocess.run(
        [sys.executable, *opts, "-c", CHILD, *args], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames(tmp / "k.json")
        pycache = tmp / "pycache"
        import hasherd

        package = Path(hasherd.__file__).parent
        compile_all = ["-m", "compileall", "-q", str(package)]
        opts = ["-X", f"pycache_prefix={pycache}"]
        subprocess.run([sys.executable, *opts, *compile_all], check=True, capture_output=True)
        out = {"as_is": measure(tmp, None), "bytecode_cached": measure(tmp, pycache)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        report(out)
    return 0


def report(out: dict[str, Any]) -> None:
    a, b = out["as_is"]["stages"], out["bytecode_cached"]["stages"]
    print(f"{'stage':<48} {'as is':>14} {'bytecode cached':>18}")
    print(f"{'':<48} {'+MiB':>6} {'RSS':>7} {'+MiB':>8} {'RSS':>9}")
    for i, ((name, rss_a, _), (_, rss_b, _)) in enumerate(zip(a, b, strict=True)):
        da = rss_a - (a[i - 1][1] if i else 0.0)
        db = rss_b - (b[i - 1][1] if i else 0.0)
        print(f"{name:<48} {da:>6.1f} {rss_a:>7.1f} {db:>8.1f} {rss_b:>9.1f}")
    print(f"{'peak (VmHWM)':<48} {'':>6} {a[-1][2]:>7.1f} {'':>8} {b[-1][2]:>9.1f}")
    loaded = out["as_is"]["loaded"]
    print(f"optional heavy modules loaded: {', '.join(loaded) if loaded else 'none'}")
    print("what would move it:")
    for note in NOTES:
        print(f"  - {note}")


if __name__ == "__main__":
    raise SystemExit(main())
