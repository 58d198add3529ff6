"""Reading the tables the notebooks write (``results/tables/*.csv``) and formatting their numbers for Markdown:
shared by the verdict table, the README's headline tables and the rerun check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Scales whose results are reported (smoke is CI's, never a result).
RESULT_SCALES = ("default", "long", "paper")


class Tables:
    """The CSV tables of one folder, read once each; ``get(name)`` is None for a missing table."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._cache: dict[str, pd.DataFrame | None] = {}

    def get(self, name: str) -> pd.DataFrame | None:
        if name not in self._cache:
            path = self.folder / f"{name}.csv"
            self._cache[name] = pd.read_csv(path) if path.is_file() else None
        return self._cache[name]

    def scales(self) -> list[str]:
        """The result scales with a Table 1 summary here."""
        return [s for s in RESULT_SCALES if (self.folder / f"table1_summary_{s}.csv").is_file()]


def num(value: float, digits: int = 1, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals, a typographic minus and, if ``signed``, an explicit plus."""
    value = round(float(value), digits) + 0.0  # no "−0.0"
    text = f"{value:+.{digits}f}" if signed and value != 0 else f"{value:.{digits}f}"
    return text.replace("-", "−")


def pm(mean: float, std: float, digits: int = 1) -> str:
    """"m ± s" (just "m" when ``std`` is NaN)."""
    return num(mean, digits) if np.isnan(std) else f"{num(mean, digits)} ± {num(std, digits)}"


def interval(row, scale: float = 100.0, digits: int = 1) -> str:
    """A paired difference row (``mean``, ``low``, ``high``) as "−1.6 [−2.1, −1.2]", values × ``scale``."""
    return (f"{num(scale * row['mean'], digits, signed=True)} "
            f"[{num(scale * row['low'], digits, signed=True)}, {num(scale * row['high'], digits, signed=True)}]")


def link(name: str, text: str | None = None) -> str:
    """A Markdown link to ``results/tables/<name>.md``, from the repository root (it works in README and results/)."""
    return f"[{text or name}](/results/tables/{name}.md)"


def md_table(header: list[str], rows: list[list[str]], align: str) -> str:
    """A Markdown table; ``align``: one character per column, "l" or "r"."""
    rule = ["--:" if a == "r" else ":--" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines) + "\n"
