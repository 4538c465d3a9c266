# Shared by hack/ scripts: strict mode, the repository root and its Python.
set -o errexit -o nounset -o pipefail

LLMOS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export LLMOS_ROOT

# The workspace's interpreter (made by `uv sync`); PYTHON overrides it.
PYTHON=${PYTHON:-${LLMOS_ROOT}/.venv/bin/python}
if [[ ! -x ${PYTHON} ]]; then
  echo "error: ${PYTHON} not found: run 'make sync' (uv sync) first" >&2
  exit 2
fi

log() { echo "+++ $*" >&2; }
