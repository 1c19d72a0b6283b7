"""The README and the manual: links that resolve, and Snakemake examples a user can paste."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", ROOT / "config" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve()
        assert resolved.exists(), f"{page.name}: {target}"
        if anchor and resolved.suffix == ".md":
            headings = {_anchor(h) for h in re.findall(r"^#+ (.*)$", resolved.read_text(), re.M)}
            assert anchor in headings, f"{page.name}: {target} (no heading with that anchor)"


def _snakemake_commands(text: str) -> list[str]:
    """Every 'snakemake ...' command in code spans and blocks (a line continued with \\ is joined)."""
    text = text.replace("\\\n", " ")
    return [m.group(0) for m in re.finditer(r"snakemake(?: [^`\n|]*)?", text)]


def test_examples_put_targets_before_configfile():
    """Snakemake reads every word after --configfile as another configuration file: a target written there
    is taken for a file. Every example names its targets first."""
    checked = 0
    for page in PAGES:
        for command in _snakemake_commands(page.read_text()):
            words = command.split()
            if "--configfile" not in words:
                continue
            checked += 1
            for word in words[words.index("--configfile") + 1:]:
                if word.startswith(("-", "#")):
                    break
                assert word.endswith((".yaml", ".yml", ".json")), f"{page.name}: {command!r}: {word!r}"
    assert checked >= 3
