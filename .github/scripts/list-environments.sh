#!/usr/bin/env bash
# The environments of this checkout (one Pulumi.<env>.yaml each, in the current directory),
# as JSON lists for the workflow's matrices, written to $GITHUB_OUTPUT:
#   review: the environments a pull request is reviewed for (all of them when
#           $MESHBOOT_ENVIRONMENTS is empty, else the listed ones);
#   deploy: the ones `pulumi up` deploys and drift detection checks ($MESHBOOT_ENVIRONMENTS).
# A name in $MESHBOOT_ENVIRONMENTS without its stack file is an error (a typo, or a pull
# request deleting the stack file of a deployed environment): nothing would be deployed or
# checked for it, and the run would still be green.
# With $BASE_REF (a pull request's base commit), a stack file the base has and this checkout
# has not gets a warning: merging it leaves that environment's clusters as they are.
# With $CHANGED_SINCE (a push's previous head), deploy lists only the environments the push
# changes: those whose stack file changed, or all of them when meshboot's program changed
# (Pulumi.yaml, __main__.py, clusters/, pki/, stacks/, scripts/, pyproject.toml). Otherwise
# every merge would wait for every environment's approval of a no-op `pulumi up`. An unknown
# previous head (a new branch, a force push) deploys all of them.
set -euo pipefail
review=()
deploy=()
wanted=" ${MESHBOOT_ENVIRONMENTS:-} "
for file in Pulumi.*.yaml; do
  [ -e "$file" ] || continue
  name="${file#Pulumi.}"
  name="${name%.yaml}"
  case "$wanted" in
    *" $name "*) deploy+=("$name"); review+=("$name") ;;
    *) if [ -z "${wanted// /}" ]; then review+=("$name"); fi ;;
  esac
done
missing=0
for name in ${MESHBOOT_ENVIRONMENTS:-}; do
  if [ ! -f "Pulumi.$name.yaml" ]; then
    echo "::error::MESHBOOT_ENVIRONMENTS lists '$name' but there is no Pulumi.$name.yaml: fix the list in .github/workflows/meshboot.yml (an environment whose stack file is deleted must leave the list too)"
    missing=1
  fi
done
if [ -n "${BASE_REF:-}" ]; then
  while IFS= read -r file; do
    [ -n "$file" ] || continue
    if [ ! -e "$file" ]; then
      name="${file#Pulumi.}"
      name="${name%.yaml}"
      echo "::warning file=$file::environment '$name' is removed by this pull request: merging deploys nothing for it and leaves its clusters as they are (remove them with \`pulumi destroy --stack $name\` first if that is the intent)"
    fi
  done < <(git ls-tree --name-only "$BASE_REF" | grep -E '^Pulumi\.[^/]+\.yaml$' || true)
fi
[ "$missing" -eq 0 ] || exit 1
if [ -n "${CHANGED_SINCE:-}" ] && [ "${#deploy[@]}" -gt 0 ] \
    && git cat-file -e "$CHANGED_SINCE^{commit}" 2>/dev/null; then
  changed="$(git diff --name-only "$CHANGED_SINCE" HEAD)"
  if ! printf '%s\n' "$changed" \
      | grep -qE '^(Pulumi\.yaml|__main__\.py|pyproject\.toml|(clusters|pki|stacks|scripts)/.*)$'; then
    kept=()
    for name in "${deploy[@]}"; do
      if printf '%s\n' "$changed" | grep -qxF "Pulumi.$name.yaml"; then kept+=("$name"); fi
    done
    deploy=("${kept[@]}")
  fi
fi
echo "review=$(jq -cn '$ARGS.positional' --args -- "${review[@]}")" >> "$GITHUB_OUTPUT"
echo "deploy=$(jq -cn '$ARGS.positional' --args -- "${deploy[@]}")" >> "$GITHUB_OUTPUT"
