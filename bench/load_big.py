"""Time and peak memory of `load()` on big files: ~100 MB in each text format and 10^6 tiny rows.

    python bench/load_big.py [--mb 100] [--tiny 1000000] [--keep DIR]

Each file is loaded in a fresh subprocess so its peak resident memory (ru_maxrss) is its own; the
figure reported is that peak minus the resident memory of the same process just before loading
(imports done). Rows are ~1 KB Alpaca rows. Prints one line per file and a final JSON line.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from scar_core.load import load
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = load(sys.argv[1])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": result.rows, "seconds": seconds, "peak_mb": (peak - before) / 1024}))
"""


def _row(i: int) -> dict:
    body = f"Sentence {i} of a longer answer, with some ordinary words in it. " * 14
    return {"instruction": f"Question number {i}: explain the topic in detail.", "input": "", "output": body}


def write_files(folder: Path, mb: int, tiny: int) -> dict[str, Path]:
    n = mb * 1_000_000 // len(json.dumps(_row(0)))
    files = {k: folder / f"big{k}" for k in (".jsonl", ".json", ".csv")}
    with files[".jsonl"].open("w") as f:
        f.writelines(json.dumps(_row(i)) + "\n" for i in range(n))
    with files[".json"].open("w") as f:
        f.write("[\n" + ",\n".join(json.dumps(_row(i)) for i in range(n)) + "\n]\n")
    with files[".csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["instruction", "input", "output"])
        w.writeheader()
        w.writerows(_row(i) for i in range(n))
    files["tiny.jsonl"] = folder / "tiny.jsonl"
    with files["tiny.jsonl"].open("w") as f:
        f.writelines(f'{{"prompt":"p{i}","completion":"c{i}"}}\n' for i in range(tiny))
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--tiny", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="write the files here and keep them")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        figures = {}
        for name, path in write_files(folder, args.mb, args.tiny).items():
            out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(ROOT)], capture_output=True,
                                 text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            got["file_mb"] = path.stat().st_size / 1e6
            figures[name] = got
            print(f"{name:12} {got['file_mb']:7.1f} MB  {got['rows']:>9} rows  {got['seconds']:6.1f} s  "
                  f"peak +{got['peak_mb']:7.1f} MB  ({got['peak_mb'] / got['file_mb']:.2f} x file)")
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
