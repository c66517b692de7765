"""Helpers for the templates and the source they render.

The template globals build kernel parameter lists from the generator's
``kernel_args``; ``tidy`` makes the rendered source pleasant to read (it is
also what gets hashed and cached).
"""

from .generator import NumbaCodeGenerator

__all__ = ["argument_list", "affixed", "array_names", "tidy"]


def argument_list(names, exclude=(), prepend=()):
    """``'a, b, c'`` for a parameter or argument list (templates use this)."""
    return ", ".join(list(prepend) + [n for n in names if n not in exclude])


def affixed(names, prefix="", suffix=""):
    """``[prefix + name + suffix, ...]`` (templates build parameter lists with it)."""
    return [f"{prefix}{name}{suffix}" for name in names]


def array_names(variables, access_data=True):
    """Generated names of array variables (their data, or the dynamic array)."""
    return [
        NumbaCodeGenerator.get_array_name(var, access_data=access_data)
        for var in variables
    ]


def tidy(code):
    """Strip trailing blanks and the runs of empty lines that templating leaves.

    At most two empty lines before top-level code, one inside a block.
    """
    lines = [line.rstrip() for line in code.splitlines()]
    tidy = []
    blanks = 0  # empty lines at the end of tidy
    for n, line in enumerate(lines):
        if not line:
            following = next((rest for rest in lines[n + 1 :] if rest), "")
            limit = 2 if following and not following[0].isspace() else 1
            if not tidy or blanks >= limit:
                continue
        blanks = 0 if line else blanks + 1
        tidy.append(line)
    return "\n".join(tidy).strip() + "\n"
