"""Packaging: one version, the licence of pyproject.toml, the runtime's dependencies."""

import importlib.metadata
import os
import tomllib

import brian2_numba

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_one_source_for_the_version():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "brian2_numba.__version__"
    }
    assert importlib.metadata.version("brian2-numba") == brian2_numba.__version__


def test_licence_file_matches_pyproject():
    project = _pyproject()["project"]
    assert project["license"] == "CECILL-2.1" and project["license-files"] == ["LICENSE"]
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert "CeCILL FREE SOFTWARE LICENSE AGREEMENT" in text
    assert "Version 2.1 dated 2013-06-21" in text
