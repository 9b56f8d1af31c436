"""Time to convert all shared raw sheets vs. merely opening them and reading every cell (same library).

python bench/convert.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import openpyxl

from realtalk_cli.data.convert import convert_file

SHEETS = sorted((Path(__file__).resolve().parents[1].parent / "shared" / "realtalk" / "raw").glob("*.xlsx"))


def read_every_cell() -> int:
    cells = 0
    for sheet in SHEETS:
        wb = openpyxl.load_workbook(sheet, read_only=True, data_only=True)
        for row in wb.worksheets[0].iter_rows(values_only=True):
            cells += len(row)
        wb.close()
    return cells


def convert_all() -> int:
    return sum(len(list(convert_file(sheet)[0].messages())) for sheet in SHEETS)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not SHEETS:
        raise SystemExit("no sheets found under ../shared/realtalk/raw")
    print(f"{len(SHEETS)} sheets, {read_every_cell()} cells, {convert_all()} messages")
    base_min, base_med = best_of(read_every_cell, args.repeat)
    conv_min, conv_med = best_of(convert_all, args.repeat)
    print(f"read every cell (openpyxl read_only): best {base_min:.3f} s, median {base_med:.3f} s")
    print(f"realtalk convert (all sheets):        best {conv_min:.3f} s, median {conv_med:.3f} s")
    print(f"ratio convert / read: {conv_min / base_min:.2f}x (best), {conv_med / base_med:.2f}x (median)")


if __name__ == "__main__":
    main()
