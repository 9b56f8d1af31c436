"""Time to convert all shared raw sheets vs. merely opening them and reading every cell (same library); and
time to convert a synthetic 200,000-line WhatsApp export vs. a bare regex pass over the same file, with the
peak memory of the conversion per MB of export.

python bench/convert.py [--repeat N] [--lines N]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
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


def write_whatsapp(path: Path, lines: int) -> None:
    """An invented Android export: three people, a message every 20 s to 15 min, some two-line messages and
    media placeholders, a system line now and then."""
    rnd = random.Random(21)
    words = "hi how are you today fine thanks see you later at the cafe sure love it what a day".split()
    who = ["Ana Lima", "Ben Ode", "Cleo Park"]
    when = datetime(2023, 1, 1, 8, 0)
    out: list[str] = []
    while len(out) < lines:
        when += timedelta(seconds=rnd.randint(20, 900))
        stamp = when.strftime("%d/%m/%Y, %H:%M")
        r = rnd.random()
        if r < 0.01:
            out.append(f"{stamp} - {rnd.choice(who)} changed their phone number")
        elif r < 0.05:
            out.append(f"{stamp} - {rnd.choice(who)}: <Media omitted>")
        elif r < 0.12:
            out += [
                f"{stamp} - {rnd.choice(who)}: " + " ".join(rnd.choices(words, k=6)),
                " ".join(rnd.choices(words, k=4)),
            ]
        else:
            out.append(f"{stamp} - {rnd.choice(who)}: " + " ".join(rnd.choices(words, k=rnd.randint(1, 14))))
    path.write_text("\n".join(out[:lines]) + "\n", encoding="utf-8")


BARE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2,4}), (\d{1,2}):(\d{2}) - ([^:]+): ")


def bare_regex_pass(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if BARE.match(line))


def whatsapp_bench(lines: int, repeat: int) -> None:
    from realtalk_cli.data.convert import ExportOptions, convert_export

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "WhatsApp Chat with Ben Ode.txt", Path(tmp) / "out.json"
        write_whatsapp(source, lines)
        size = source.stat().st_size / 1e6

        def convert() -> int:
            return convert_export(source, target, ExportOptions(force=True)).messages

        print(f"WhatsApp export: {lines} lines, {size:.1f} MB, {convert()} messages")
        base_min, base_med = best_of(lambda: bare_regex_pass(source), repeat)
        conv_min, conv_med = best_of(convert, repeat)
        tracemalloc.start()
        convert()
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        print(f"bare regex pass over the lines:       best {base_min:.3f} s, median {base_med:.3f} s")
        print(f"realtalk convert (parse, sort, write): best {conv_min:.3f} s, median {conv_med:.3f} s")
        print(f"ratio convert / bare regex: {conv_min / base_min:.1f}x (best), {conv_med / base_med:.1f}x (median)")
        print(f"peak memory of convert: {peak:.0f} MB, {peak / size:.1f} MB per MB of export")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lines", type=int, default=200_000, help="lines of the synthetic WhatsApp export")
    args = parser.parse_args()
    whatsapp_bench(args.lines, max(1, min(args.repeat, 3)))
    if not SHEETS:
        print("no sheets found under ../shared/realtalk/raw: the xlsx measurement is skipped")
        return
    print(f"{len(SHEETS)} sheets, {read_every_cell()} cells, {convert_all()} messages")
    base_min, base_med = best_of(read_every_cell, args.repeat)
    conv_min, conv_med = best_of(convert_all, args.repeat)
    print(f"read every cell (openpyxl read_only): best {base_min:.3f} s, median {base_med:.3f} s")
    print(f"realtalk convert (all sheets):        best {conv_min:.3f} s, median {conv_med:.3f} s")
    print(f"ratio convert / read: {conv_min / base_min:.2f}x (best), {conv_med / base_med:.2f}x (median)")


if __name__ == "__main__":
    main()
