# shellcheck shell=bash
# npm_tool: install a pinned npm package once under .ci/work/ (git-ignored) for the scripts in .ci/.
# Source it; it defines functions only.

# npm_tool NAME PACKAGE VERSION: make sure PACKAGE@VERSION is installed under .ci/work/NAME (each
# tool in its own prefix, since `npm install --no-save` into a shared one would prune the other
# tools) and print the folder of its executables. Reinstalls when the version or Node changes.
npm_tool() {
  local name=$1 pkg=$2 version=$3
  local top prefix stamp want
  top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  prefix=$top/.ci/work/$name
  stamp=$prefix/.installed
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "npm_tool: node and npm are needed (the machine's Node.js 20+; Debian's nodejs is too old)" >&2
    return 1
  fi
  want="$pkg@$version node $(node --version)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$prefix"
    mkdir -p "$prefix"
    echo "npm_tool: installing $pkg@$version into .ci/work/$name" >&2
    # SCARF_ANALYTICS: no install-time analytics call (a dependency of Prism's).
    SCARF_ANALYTICS=false npm install --no-save --no-audit --no-fund --no-update-notifier \
      --loglevel=error --prefix "$prefix" "$pkg@$version" >&2 || return 1
    echo "$want" >"$stamp"
  fi
  echo "$prefix/node_modules/.bin"
}
