"""The templates share code through base templates and macros, not copies."""

import collections
import os

import brian2_numba

TEMPLATES = os.path.join(os.path.dirname(brian2_numba.__file__), "templates")

#: consecutive lines (blank lines left out) that count as a copy
WINDOW = 6


def _windows():
    """``{six stripped lines: [(template, line number), ...]}`` over all templates."""
    found = collections.defaultdict(list)
    for name in sorted(os.listdir(TEMPLATES)):
        if not name.endswith(".py_"):
            continue
        with open(os.path.join(TEMPLATES, name)) as f:
            lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
        for k in range(len(lines) - WINDOW + 1):
            window = tuple(text for _, text in lines[k : k + WINDOW])
            found[window].append((name, lines[k][0]))
    return found


def test_no_template_copies_lines():
    copies = {window: places for window, places in _windows().items() if len(places) > 1}
    assert not copies, "\n\n".join(
        f"{places}:\n" + "\n".join(window) for window, places in copies.items()
    )


def test_the_check_finds_a_copy(tmp_path, monkeypatch):
    """A template pasted into another file is found (so the check can fail)."""
    for name in os.listdir(TEMPLATES):
        with open(os.path.join(TEMPLATES, name)) as f:
            (tmp_path / name).write_text(f.read())
    source = (tmp_path / "ratemonitor.py_").read_text()
    (tmp_path / "copy.py_").write_text(source)
    monkeypatch.setattr(__import__(__name__), "TEMPLATES", str(tmp_path))
    copies = [places for places in _windows().values() if len(places) > 1]
    assert copies and all({"copy.py_", "ratemonitor.py_"} == {n for n, _ in p} for p in copies)
