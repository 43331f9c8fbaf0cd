#!/usr/bin/env bash
# Drift detection's guard: is `$JOB_NAME` (the `pulumi up` job of this environment) queued
# or running in a push run of this workflow? Writes check=false (skip the drift check, with
# a notice) or check=true to $GITHUB_OUTPUT. Needs `gh` with GH_TOKEN (actions: read).
#
# A queued or running `up` holds the stack: a preview now would fail on the stack's lock or
# report its half-applied change as drift. One waiting for its approval has not touched the
# stack: the merged change it waits to deploy is reported as drift ("a change was never
# deployed"), and drift detection is not held up by an approval nobody gives.
set -euo pipefail
: "${JOB_NAME:?}" "${GITHUB_REPOSITORY:?}" "${GITHUB_OUTPUT:?}"
# GITHUB_WORKFLOW_REF: owner/repo/.github/workflows/<file>@<ref>
workflow="${GITHUB_WORKFLOW_REF:?}"
workflow="${workflow%@*}"
workflow="${workflow##*/}"
busy=0
runs="$(gh run list --repo "$GITHUB_REPOSITORY" --workflow "$workflow" --event push \
          --json databaseId,status --jq '.[] | select(.status != "completed") | .databaseId')"
for run in $runs; do
  n="$(gh run view "$run" --repo "$GITHUB_REPOSITORY" --json jobs --jq \
         "[.jobs[] | select(.name == \"$JOB_NAME\" and (.status == \"queued\" or .status == \"in_progress\" or .status == \"pending\"))] | length")"
  busy=$((busy + n))
done
if [ "$busy" -gt 0 ]; then
  echo "::notice::$JOB_NAME is under way: drift detection skipped this time"
  echo "check=false" >> "$GITHUB_OUTPUT"
else
  echo "check=true" >> "$GITHUB_OUTPUT"
fi
