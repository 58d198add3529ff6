"""No figure of the README's results tables is typed by hand: each marked block (``<!-- begin: PATH -->`` …
``<!-- end: PATH -->``) is a copy of a generated file, and the generated files are what ``hdm.analysis.verdicts``
writes from the committed tables. After new results: ``python -m hdm.analysis.verdicts --readme``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hdm.analysis import claims, headlines, verdicts
from hdm.analysis.tables import Tables

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TABLES = ROOT / "results" / "tables"


def test_every_marked_block_equals_its_file():
    blocks = headlines.readme_blocks(README.read_text())
    assert "results/verdicts.md" in [path for path, _ in blocks], "the README lost its verdict table block"
    for path, body in blocks:
        assert (ROOT / path).is_file(), f"README block names {path}, which does not exist"
        assert body == (ROOT / path).read_text(), (
            f"README's block of {path} differs from the file: run python -m hdm.analysis.verdicts --readme")


def test_markers_are_paired():
    text = README.read_text()
    begins, ends = (len(re.findall(rf"^<!-- {word}: ", text, re.M)) for word in ("begin", "end"))
    assert begins == ends == len(headlines.readme_blocks(text))


def test_generated_files_are_what_the_committed_tables_give(tmp_path):
    written = verdicts.write_results(TABLES, tmp_path)
    assert written, "nothing generated"
    for path in written:
        committed = ROOT / "results" / path.relative_to(tmp_path)
        assert committed.is_file(), f"{committed.name} is generated but not committed"
        assert path.read_text() == committed.read_text(), (
            f"{committed} is stale: run python -m hdm.analysis.verdicts --readme")


def test_embed_replaces_only_the_marked_blocks(tmp_path):
    (tmp_path / "a.md").write_text("| x |\n|---|\n| 2 |\n")
    text = "intro\n<!-- begin: a.md -->\n| x |\n|---|\n| 1 |\n<!-- end: a.md -->\nafter | 1 |\n"
    out = headlines.embed(text, tmp_path)
    assert out == "intro\n<!-- begin: a.md -->\n| x |\n|---|\n| 2 |\n<!-- end: a.md -->\nafter | 1 |\n"
    assert headlines.readme_blocks(out) == [("a.md", "| x |\n|---|\n| 2 |\n")]


@pytest.mark.parametrize("scale", ["default", "long"])
def test_every_claim_has_a_verdict_at_each_committed_scale(scale):
    rows = claims.verdict_rows(scale, TABLES)
    core = {row["claim"] for claim in claims.CORE_CLAIMS if (row := claim(Tables(TABLES), scale)) is not None}
    assert len(core) == len(claims.CORE_CLAIMS) and core <= set(rows["claim"])
    assert len(rows) <= len(claims.CLAIMS)
    assert set(rows["verdict"]) <= set(claims.VERDICTS)
