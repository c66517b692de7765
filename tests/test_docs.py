"""The preferences are documented once: rendered from their definitions."""

import os

from brian2 import prefs

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs")


def _numba_preferences():
    return sorted(name for name in prefs if name.startswith("codegen.runtime.numba."))


def test_preferences_page_renders_every_preference_from_its_definition():
    with open(os.path.join(DOCS, "preferences.rst")) as f:
        page = f.read()
    # the page is Brian's directive, which renders prefs.get_documentation
    assert ".. document_brian_prefs:: codegen.runtime.numba\n" in page
    rendered = prefs.get_documentation("codegen.runtime.numba")
    definitions = prefs.pref_register["codegen.runtime.numba"][0]
    assert sorted(f"codegen.runtime.numba.{name}" for name in definitions) == _numba_preferences()
    assert len(definitions) == 10
    for name, preference in definitions.items():
        assert f"``codegen.runtime.numba.{name}`` = ``{preference.default!r}``" in rendered
        first_line = preference.docs.strip().splitlines()[0].strip()
        assert first_line and first_line in rendered, name


def test_readme_has_no_copy_of_the_preference_docs():
    with open(os.path.join(DOCS, os.pardir, "README.md")) as f:
        readme = f.read()
    assert "| preference |" not in readme
    assert "docs/preferences.rst" in readme
