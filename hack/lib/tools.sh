# shellcheck shell=bash
# The tools the repository installs or builds, found without relying on PATH (a fresh CI
# machine has none of them on it).
LLMOS_ROOT=${LLMOS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LLMOS_CACHE=${LLMOS_CACHE:-${HOME}/.cache/llmos}

# uv: on PATH for developers who have it, else the copy hack/install-uv puts in .tools/.
if [[ -z ${UV:-} ]]; then
  UV=$(command -v uv 2>/dev/null || echo "${LLMOS_ROOT}/.tools/bin/uv")
fi
export UV

# go: on PATH, else where the Go distribution installs itself.
if [[ -z ${GO:-} ]]; then
  GO=$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)
fi
export GO
