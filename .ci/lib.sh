# shellcheck shell=bash
# Helpers shared by the scripts under .ci/. Source it; it defines functions only.

_step_summary=()

# step NAME: print a section header and remember when it started.
step() {
  _step_end
  _step_name=$1
  _step_start=$SECONDS
  printf '\n== %s ==\n' "$1"
}

# _step_end: print how long the current section took, and keep a summary line.
_step_end() {
  if [ -n "${_step_name:-}" ]; then
    local took=$((SECONDS - _step_start))
    printf -- '-- %s: %ds\n' "$_step_name" "$took"
    _step_summary+=("$(printf '%5ds  %s' "$took" "$_step_name")")
    _step_name=
  fi
}

# step_summary: print how long each section took.
step_summary() {
  _step_end
  printf '\n== timings ==\n'
  printf '%s\n' "${_step_summary[@]}"
}

# image_fresh IMAGE KEY: true when IMAGE exists and was built from inputs whose digest is KEY.
image_fresh() {
  local have
  have=$(docker image inspect -f '{{ index .Config.Labels "tokensvc.ci.inputs" }}' "$1" 2>/dev/null) || return 1
  [ "$have" = "$2" ]
}

# inputs_key ARGS...: a digest of the given strings (script contents, tool versions, …).
inputs_key() {
  printf '%s\n' "$@" | sha256sum | cut -c1-32
}
