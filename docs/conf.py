"""Sphinx configuration for the ntpauto documentation (MyST Markdown pages).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(``tests/test_docs.py`` runs exactly this and fails on any warning).
"""

project = "ntpauto"
author = "ntpauto developers"
copyright = "ntpauto developers"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"

# docs/examples/ holds a plugin distribution (Python, TOML): only its README is a page.
exclude_patterns = [
    "_build",
    "examples/**/*.py",
    "examples/**/*.toml",
    "examples/**/dropin.cache",
]

# Headings up to #### get anchors, so [text](page.md#a-heading) links resolve (interop.md's
# numbered reference sections are ####).
myst_heading_anchors = 4

html_theme = "alabaster"
html_title = "ntpauto"
html_theme_options = {"description": "NTPv4 with Autokey (RFC 5906) on Twisted"}
