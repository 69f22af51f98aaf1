#!/usr/bin/env bash
# The build and install steps of the image, run the same way by the Dockerfile and by
# tests/deploy (outside Docker), so that what CI proves is what the image does.
#
#   deploy/build.sh wheel WHEEL_DIR          build bhuktani's wheel from this checkout
#   deploy/build.sh install VENV WHEEL_DIR   a fresh venv with the wheel and its dependencies
#
# install takes the dependencies from the lock, requirements/run.txt (pinned, hashes
# checked), when the checkout has one; else pip resolves pyproject.toml's ranges. PYTHON
# chooses the interpreter (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

usage() {
    echo "usage: $0 wheel WHEEL_DIR | install VENV WHEEL_DIR" >&2
    exit 2
}

wheel() {
    local out="$1" copy
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    # From a copy: setuptools writes build/ and *.egg-info beside the sources it builds,
    # and the checkout (or the image's context) stays as it was.
    copy="$(mktemp -d)"
    trap 'rm -rf "$copy"' RETURN
    cp -R "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/LICENSE" "$ROOT/src" "$copy/"
    rm -rf "$copy"/src/*.egg-info
    find "$copy/src" -name __pycache__ -prune -exec rm -rf {} +
    "$PYTHON" -m pip wheel --quiet --no-deps --no-cache-dir --wheel-dir "$out" "$copy"
    ls "$out"/bhuktani-*.whl >/dev/null
}

install() {
    local venv="$1" wheels="$2"
    local found=("$wheels"/bhuktani-*.whl)
    if [ "${#found[@]}" -ne 1 ] || [ ! -f "${found[0]}" ]; then
        echo "expected one bhuktani wheel in $wheels, found: ${found[*]}" >&2
        exit 1
    fi
    "$PYTHON" -m venv "$venv"
    local pip=("$venv/bin/python" -m pip --no-cache-dir --quiet)
    if [ -f "$ROOT/requirements/run.txt" ]; then
        # The lock pins every dependency with its hashes; the wheel itself is ours.
        "${pip[@]}" install --require-hashes --no-deps -r "$ROOT/requirements/run.txt"
        "${pip[@]}" install --no-deps "${found[0]}"
    else
        "${pip[@]}" install "${found[0]}"
    fi
    "${pip[@]}" check
    "$venv/bin/bhuktani" --version
}

[ $# -ge 1 ] || usage
case "$1" in
    wheel) [ $# -eq 2 ] || usage; wheel "$2" ;;
    install) [ $# -eq 3 ] || usage; install "$2" "$3" ;;
    *) usage ;;
esac
