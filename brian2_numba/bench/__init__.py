"""Benchmarks comparing Brian2's code generation targets, numba included.

One command runs the whole comparison: ``brian2-numba-bench`` (or
``python -m brian2_numba.bench``; ``--help`` for the options, ``--list`` for
the models). Modules, one per concern:

* :mod:`.models`: the standard models (Brian2's, Brian2CUDA's, Brian2GeNN's);
* :mod:`.targets`: which targets can run here, and why not;
* :mod:`.runner` and ``child.py``: the protocol and one run per fresh process;
* :mod:`.environment`: versions and machine facts stored with each result;
* :mod:`.report` and :mod:`.plots`: the summary table and the figures;
* :mod:`.cli`: the command line.

See ``docs/benchmarks.md`` for results and how to reproduce them.
"""
