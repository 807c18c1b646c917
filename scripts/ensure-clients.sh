#!/usr/bin/env bash
# The real clients the client suite (tests/tests/clients.rs) drives, pinned to exact
# versions, in a throwaway place: the Python SDKs in a venv, the coding agents under
# an npm prefix, both under SWITCHYARD_CLIENTS_DIR (default $TMPDIR/switchyard-clients).
# A second run with the same versions installs nothing. Without Node and npm the
# agents are left out and their tests say they skipped; the SDKs need Python 3.
set -euo pipefail

dir="${SWITCHYARD_CLIENTS_DIR:-${TMPDIR:-/tmp}/switchyard-clients}"
python_packages=(openai==3.63.0 anthropic==2.17.0 google-genai==3.6.1)
npm_packages=(@anthropic-ai/claude-code@2.1.337 @openai/codex@0.171.0)

mkdir -p "$dir"
# Each stamp names exactly what was installed, so a change of version reinstalls.
python_stamp="$dir/python.installed"
if [ "$(cat "$python_stamp" 2>/dev/null)" != "${python_packages[*]}" ]; then
    echo "ensure-clients.sh: installing ${python_packages[*]}"
    rm -rf "$dir/venv"
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q --disable-pip-version-check "${python_packages[@]}"
    echo "${python_packages[*]}" >"$python_stamp"
fi

npm_stamp="$dir/npm.installed"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "ensure-clients.sh: no node/npm here; the Claude Code and Codex tests will skip" >&2
elif [ "$(cat "$npm_stamp" 2>/dev/null)" != "${npm_packages[*]}" ]; then
    echo "ensure-clients.sh: installing ${npm_packages[*]}"
    rm -rf "$dir/npm"
    # The agents' own engine ranges are advisory: both ship a native binary.
    npm install -g --silent --no-fund --no-audit --prefix "$dir/npm" "${npm_packages[@]}"
    echo "${npm_packages[*]}" >"$npm_stamp"
fi
