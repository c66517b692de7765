"""Sphinx configuration of the brian2-numba documentation.

Build: ``sphinx-build -W docs docs/_build/html`` (``pip install -e '.[docs]'``).
The Markdown pages (design.md, benchmarks.md and the sections of README.md
that make up the user guide) are rendered by myst-parser; the preferences
reference is rendered from the preferences' definitions by Brian's own
Sphinx extension (``brian2.sphinxext.briandoc``).
"""

import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

import brian2_numba  # noqa: E402  (registers the preferences that the reference renders)

project = "brian2-numba"
author = "the brian2-numba contributors"
copyright = "the brian2-numba contributors"
version = release = brian2_numba.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",  # briandoc lists a class's members with it
    "sphinx.ext.viewcode",
    "brian2.sphinxext.briandoc",  # document_brian_prefs, numpydoc sections
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # links such as design.md#the-cache
myst_enable_extensions = ["colon_fence"]
autodoc_member_order = "bysource"
html_theme = "sphinx_rtd_theme"
html_title = f"brian2-numba {release}"

#: the results directory of the benchmarks, outside docs/: its files are
#: published with the pages (links to them become download links)
BENCHMARK_LINK = re.compile(r"\]\(\.\./benchmarks/([^)]*)\)")


def _benchmark_links(app, docname, source):
    """Links into ../benchmarks/ (files, not pages) as links to the files.

    benchmarks.md links to the benchmark tool's output, which is not part of
    the documentation: a file becomes a download link (``path:``), a
    directory a link to its summary.
    """

    def replace(match):
        target = match.group(1)
        if not target or target.endswith("/"):
            target += "summary.md"
        if target.endswith(".png"):
            return match.group(0)  # images: Sphinx copies them
        return f"](path:../benchmarks/{target})"

    source[0] = BENCHMARK_LINK.sub(replace, source[0])


def setup(app):
    app.connect("source-read", _benchmark_links)
