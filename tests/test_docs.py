"""The documentation site: it builds without a single Sphinx warning, and the configuration
reference (docs/configuration.md) documents every directive and option the parser accepts.

The directive list comes from the parser's own dispatch table (``config.directive_names()``)
and the options from ``config.DIRECTIVE_OPTIONS``, so a directive or option added to
``ntpauto/config.py`` without documentation fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ntpauto import config
from ntpauto.config import (
    DIRECTIVE_OPTIONS,
    UNSUPPORTED_DIRECTIVES,
    ConfigError,
    directive_names,
    parse_config,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
REFERENCE = DOCS / "configuration.md"
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _markdown_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def _split(text: str) -> list[tuple[str, str, str]]:
    """(heading, body prose, body code) for every heading of level 2 or 3; code is the
    inline code spans and fenced blocks of the body, one per line."""
    sections: list[tuple[str, list[str], list[str]]] = []
    fence: str | None = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is not None:
            if match and match.group(2).startswith(fence) and not match.group(3).strip():
                fence = None
            elif sections:
                sections[-1][2].append(line)
            continue
        if match:
            fence = match.group(2)
            continue
        heading = re.match(r"#{2,3} (.*)", line)
        if heading:
            sections.append((heading.group(1), [], []))
        elif sections:
            sections[-1][1].append(line)
            sections[-1][2].extend(_CODE_SPAN.findall(line))
    return [(h, "\n".join(prose), "\n".join(code)) for h, prose, code in sections]


def _words(code: str, word: str) -> bool:
    """``word`` occurs in ``code`` as a whole token (``-4`` in ``[-4|-6]``, not ``ntp`` in
    ``ntpport``)."""
    return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-])", code) is not None


def _sections_for(directive: str) -> list[tuple[str, str, str]]:
    """The sections whose heading names ``directive`` in a code span (its first word)."""
    found = []
    for heading, prose, code in _split(REFERENCE.read_text(encoding="utf-8")):
        names = {span.split()[0] for span in _CODE_SPAN.findall(heading)}
        if directive in names:
            found.append((heading, prose, code))
    return found


def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    """``python -m sphinx -W --keep-going -b html docs OUT`` succeeds: no broken cross-link,
    no page outside the toctree, no unlexable code block."""
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert (tmp_path / "html" / "index.html").is_file()
    assert (tmp_path / "html" / "configuration.html").is_file()


def test_option_table_covers_every_directive() -> None:
    """``DIRECTIVE_OPTIONS`` lists exactly the directives the parser dispatches."""
    names = directive_names()
    assert "server" in names and "crypto" in names
    assert set(DIRECTIVE_OPTIONS) == names, (
        "add the directive's options to config.DIRECTIVE_OPTIONS: "
        f"{sorted(names ^ set(DIRECTIVE_OPTIONS))}")


@pytest.mark.parametrize("directive", sorted(directive_names()))
def test_directive_is_documented(directive: str) -> None:
    """Each directive has a ``###`` heading naming it, and its section shows every option
    the parser accepts after it."""
    sections = _sections_for(directive)
    assert sections, f"docs/configuration.md has no '### `{directive}`' section"
    code = "\n".join(c for _, _, c in sections)
    assert _words(code, directive)
    missing = sorted(o for o in DIRECTIVE_OPTIONS[directive] if not _words(code, o))
    assert not missing, f"{directive}: options not documented in its section: {missing}"


def test_refused_options_are_documented() -> None:
    """The ntpd options the parser recognises and refuses are named where they would go."""
    for directive, refused in (("server", config._UNSUPPORTED_SERVER_OPTIONS),
                               ("fudge", config._UNSUPPORTED_FUDGE_OPTIONS)):
        code = "\n".join(c for _, _, c in _sections_for(directive))
        missing = sorted(o for o in refused if not _words(code, o))
        assert not missing, f"{directive}: refused options not named: {missing}"


def test_unsupported_directives_are_listed() -> None:
    """Every directive ignored with a warning is listed under 'Not supported'."""
    [(_, prose, code)] = [s for s in _split(REFERENCE.read_text(encoding="utf-8"))
                          if s[0] == "Not supported"]
    missing = sorted(d for d in UNSUPPORTED_DIRECTIVES if not _words(code, d))
    assert not missing, f"unsupported directives missing from 'Not supported': {missing}"
    assert "`restrict source`" in prose


def _example_blocks() -> list[str]:
    """Fenced blocks of the reference that are configuration examples: every line is a
    directive (no syntax placeholders in capitals, brackets or alternatives, no messages)."""
    known = directive_names() | UNSUPPORTED_DIRECTIVES
    blocks, current, fence = [], [], None
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, current = match.group(2), []
            continue
        if match and match.group(2).startswith(fence) and not match.group(3).strip():
            fence = None
            lines = [x.split("#")[0].split() for x in current]
            lines = [x for x in lines if x]
            if lines and all(x[0] in known for x in lines) and not any(
                    "[" in w or "|" in w or re.fullmatch(r"[A-Z][A-Z0-9]*", w)
                    for x in lines for w in x):
                blocks.append("\n".join(current))
            continue
        current.append(line)
    return blocks


def test_reference_examples_parse() -> None:
    """Every configuration example on the reference page loads without an error."""
    blocks = _example_blocks()
    assert len(blocks) >= 25
    for block in blocks:
        if "includefile" in block:
            with pytest.raises(ConfigError, match="cannot read included file"):
                parse_config(block, "/nonexistent/ntp.conf")
            continue
        parse_config(block, "<docs>")


def test_code_blocks_name_a_language() -> None:
    """Every fenced block says what it is (```text, ```sh, ```python, ...)."""
    bare = []
    for page in _markdown_pages():
        fence = None
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            match = _FENCE.match(line)
            if not match:
                continue
            if fence is None:
                fence = match.group(2)
                if not match.group(3).strip():
                    bare.append(f"{page.relative_to(DOCS)}:{number}")
            elif match.group(2).startswith(fence) and not match.group(3).strip():
                fence = None
    assert not bare, f"code blocks without a language: {bare}"
