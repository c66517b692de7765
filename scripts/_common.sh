# Shared by scripts/demo and scripts/test: find a suitable Python and make a
# venv with brian2_numba installed. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# find_python MINOR: a python3.MINOR executable (PATH, then pyenv), or "".
find_python() {
    local minor="$1" candidate root
    for candidate in "python3.$minor" "$(command -v pyenv >/dev/null 2>&1 && pyenv root 2>/dev/null)/versions/3.$minor"*/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c "import sys; assert sys.version_info[:2] == (3, $minor)" 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    echo ""
}

# pick_python: sets PYTHON and BRIAN_SPEC to the newest supported pair
# (Python 3.13 + Brian2 2.11, else 3.12 + 2.10), or exits.
pick_python() {
    PYTHON="$(find_python 13)"; BRIAN_SPEC="brian2>=2.11,<2.12"
    if [ -z "$PYTHON" ]; then PYTHON="$(find_python 12)"; BRIAN_SPEC="brian2>=2.10,<2.11"; fi
    [ -n "$PYTHON" ] || { echo "Needs Python 3.13 or 3.12 (on PATH or in pyenv)" >&2; exit 1; }
}

# make_venv DIR PYTHON BRIAN_SPEC [EXTRAS]: create (or reuse) a venv with
# brian2_numba and its extras (default: test,sweep).
make_venv() {
    local dir="$1" python="$2" brian="$3" extras="${4:-test,sweep}"
    if [ ! -x "$dir/bin/python" ]; then
        "$python" -m venv "$dir"
    fi
    "$dir/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    "$dir/bin/python" -m pip install --quiet "$brian" -e "$ROOT[$extras]" 2>&1 |
        grep -v "^WARNING: Location" || true
    "$dir/bin/python" -c "import brian2, numba, brian2_numba; print(f'{\"$dir\"}: Python {__import__(\"sys\").version.split()[0]}, Brian2 {brian2.__version__}, numba {numba.__version__}')"
}
