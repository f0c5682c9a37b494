"""Sphinx configuration for scdpsynth."""

import shutil
from importlib.metadata import version as _version
from pathlib import Path

# the tutorial notebooks live in ../notebooks (committed with outputs); copy them next to the docs sources
_nb_src, _nb_dst = Path(__file__).parent.parent / "notebooks", Path(__file__).parent / "_notebooks"
_nb_dst.mkdir(exist_ok=True)
for _nb in _nb_src.glob("*.ipynb"):
    shutil.copy2(_nb, _nb_dst / _nb.name)

project = "scdpsynth"
author = "scdpsynth developers"
copyright = "2026, scdpsynth developers"
release = _version("scdpsynth")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_custom_sections = [("Params", "Parameters")]
myst_enable_extensions = ["colon_fence", "dollarmath"]
nb_execution_mode = "off"  # notebooks are committed with their outputs
nitpicky = False
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "sphinx_book_theme"
html_title = "scdpsynth"
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
