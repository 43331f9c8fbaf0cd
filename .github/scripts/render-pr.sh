#!/usr/bin/env bash
# Render one environment twice for a pull request's review, run from the PR's checkout:
#   $RUNNER_TEMP/render/base  the base commit ($BASE_SHA), with the base's own meshboot
#                             (its own virtualenv; $BASE_MESHBOOT overrides, for tests);
#   $RUNNER_TEMP/render/head  this checkout, with $MESHBOOT (default .venv/bin/meshboot).
# Writes to $GITHUB_OUTPUT: base_exists (false: a new environment), base_root and head_root
# (where each render took the root CA from: imported, store, new; .github/scripts/root-source.sh),
# and appends notes for the PR comment to $RUNNER_TEMP/notes.md.
#
# Both renders share one temporary PKI store, so the head render reuses the intermediates
# the base render issued and the diff shows only what the PR changes (also when neither
# has meshboot:pki.rootCa: the head reuses the root the base made up on this runner). A
# head that imports a root over a base without one (the PR that runs `meshboot pki init`)
# is refused by that store ("root rotation is not done implicitly"); then the head
# renders with a store of its own.
#
# A fresh runner has no PKI store, so the head render's root must come from the stack file;
# otherwise it is an error for a deployed environment ($DEPLOYED=true, the workflow fails
# the job after posting the diff) and a warning for the others.
set -euo pipefail
: "${STACK_FILE:?}" "${BASE_SHA:?}" "${RUNNER_TEMP:?}" "${GITHUB_OUTPUT:?}"
meshboot="${MESHBOOT:-.venv/bin/meshboot}"
here="$(cd "$(dirname "$0")" && pwd)"
notes="$RUNNER_TEMP/notes.md"
: > "$notes"
render="$RUNNER_TEMP/render"
base="$RUNNER_TEMP/base"

git worktree add --quiet --detach "$base" "$BASE_SHA"
base_root=none
if [ -f "$base/$STACK_FILE" ]; then
  echo "base_exists=true" >> "$GITHUB_OUTPUT"
  base_meshboot="${BASE_MESHBOOT:-}"
  if [ -z "$base_meshboot" ]; then
    "${PYTHON:-python3}" -m venv "$RUNNER_TEMP/base-venv"
    "$RUNNER_TEMP/base-venv/bin/pip" install --quiet -e "$base"
    base_meshboot="$RUNNER_TEMP/base-venv/bin/meshboot"
  fi
  (cd "$base" && "$base_meshboot" render --config "$STACK_FILE" --out "$render/base" \
     --pki-dir "$RUNNER_TEMP/pki") | tee "$RUNNER_TEMP/render-base.log"
  base_root="$("$here/root-source.sh" "$RUNNER_TEMP/render-base.log")"
else
  echo "base_exists=false" >> "$GITHUB_OUTPUT"
fi
echo "base_root=$base_root" >> "$GITHUB_OUTPUT"

if [ "$base_root" != imported ] && [ "$base_root" != none ]; then
  printf '> The base branch'"'"'s %s has no `meshboot:pki.rootCa`: its render used a root CA made up on this runner, so the CA lines compare against that root, not the deployed one.\n\n' \
    "$STACK_FILE" >> "$notes"
fi
render_head() {  # $1: the PKI store; stderr kept aside, shown once the head is rendered
  "$meshboot" render --config "$STACK_FILE" --out "$render/head" --pki-dir "$1" \
    2> "$RUNNER_TEMP/render-head.err" | tee "$RUNNER_TEMP/render-head.log"
}
rc=0; render_head "$RUNNER_TEMP/pki" || rc=$?
if [ "$rc" -ne 0 ] && [ "$base_root" = new ]; then
  # The head imports a root (the PR that runs `meshboot pki init`) and the shared store
  # holds the one the base made up: render refuses that (exit 2, writing nothing), so the
  # head renders with a store of its own. A head without a root reuses the base's.
  rc=0; render_head "$RUNNER_TEMP/pki-head" || rc=$?
fi
cat "$RUNNER_TEMP/render-head.err" >&2
[ "$rc" -eq 0 ] || exit "$rc"
head_root="$("$here/root-source.sh" "$RUNNER_TEMP/render-head.log")"
echo "head_root=$head_root" >> "$GITHUB_OUTPUT"
if [ "$head_root" != imported ]; then
  message="$STACK_FILE has no meshboot:pki.rootCa, so this render's root CA was generated on the runner (the deployed mesh's root is not in the repository). Put the root into the stack file and commit it: \`pulumi stack export --stack <stack> | meshboot pki init --config $STACK_FILE --from-state -\` for a deployed stack, \`meshboot pki init --config $STACK_FILE\` for a new one (README: The mesh's identity)."
  if [ "${DEPLOYED:-false}" = true ]; then
    echo "::error file=$STACK_FILE::$message"
  else
    echo "::warning file=$STACK_FILE::$message"
  fi
  printf '> **No root CA in %s**: %s\n\n' "$STACK_FILE" "$message" >> "$notes"
fi
