"""The `all` extra installs every optional feature that the code asks a user to install."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def expand(name: str, table: dict[str, list[str]]) -> set[str]:
    """The requirement names an extra pulls in, following digitnet[a,b] self-references."""
    out = set()
    for req in table[name]:
        m = re.fullmatch(r"digitnet\[([\w,]+)\]", req)
        if m:
            for sub in m.group(1).split(","):
                out |= expand(sub, table)
        else:
            out.add(re.split(r"[<>=\[; ]", req, maxsplit=1)[0].lower())
    return out


def test_all_extra_covers_every_feature_extra():
    table = extras()
    everything = expand("all", table)
    for name in set(table) - {"all", "dev", "ray"}:
        assert expand(name, table) <= everything, name
    assert expand("all", table) <= expand("dev", table)  # the tests exercise all of it


def test_every_install_hint_names_an_extra_that_all_covers():
    table = extras()
    hinted = set()
    for path in (ROOT / "src" / "digitnet").rglob("*.py"):
        hinted |= set(re.findall(r"digitnet\[(\w+)\]", path.read_text()))
    assert hinted, "no install hints found"
    everything = expand("all", table)
    for name in hinted - {"all", "ray"}:
        assert name in table and expand(name, table) <= everything, name


def test_readme_setup_installs_all():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("## ", 1)[0]
    assert "pip install '.[all]'" in setup
