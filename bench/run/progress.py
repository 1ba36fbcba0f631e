"""A progress bar with loss, step time and ETA: tqdm on a terminal, one plain line per update
otherwise (CI logs and redirected output stay readable)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def line(desc: str, n: int, total: int, postfix: str, elapsed: float, eta: float) -> str:
    """One progress line, each number named: "train 40/200 done, loss 0.6931, step time (median of
    last 20): 0.52 s, elapsed 21 s, eta 83 s" (eta: the time left at the mean pace so far). It starts
    "<desc> <n>/<total>" as tqdm's bar does: scripts and tests watch a log for "train 40/200"."""
    return ", ".join(part for part in (f"{desc} {n}/{total} done", postfix, f"elapsed {elapsed:.0f} s", f"eta {eta:.0f} s") if part)


class LineProgress:
    """tqdm's interface, printing a line at most every `every` items and at the end."""

    def __init__(self, total: int, desc: str, every: int):
        self.total, self.desc, self.every = total, desc, max(1, every)
        self.n, self.postfix, self.start, self.last_printed = 0, "", time.perf_counter(), 0

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self.last_printed >= self.every or self.n >= self.total:
            self._print()

    def _print(self) -> None:
        self.last_printed = self.n
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
        print(line(self.desc, self.n, self.total, self.postfix, elapsed, eta), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.n != self.last_printed:
            self._print()


def progress(total: int, desc: str, every: int | None = None, quiet: bool = False) -> tqdm | LineProgress:
    """A bar on a terminal; otherwise a line about every tenth of the way (or every `every`).
    quiet: nothing at all (a data-parallel run's ranks other than 0: one progress line per run)."""
    if quiet:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False)
    return LineProgress(total, desc, every or max(1, total // 10))
