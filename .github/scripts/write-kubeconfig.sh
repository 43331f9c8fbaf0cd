#!/usr/bin/env bash
# Write the kubeconfig from the CI secret store ($KUBECONFIG_CONTENT: the YAML, or its
# base64) to $RUNNER_TEMP/kubeconfig, mode 0600, and point KUBECONFIG at it for the next
# steps. The content is never echoed; its credential values are masked in the log as
# well (GitHub masks a secret only where it appears whole).
set -euo pipefail
if [ -z "${KUBECONFIG_CONTENT:-}" ]; then
  echo "::error::the KUBECONFIG secret is not set for this environment"
  exit 1
fi
file="${RUNNER_TEMP:?}/kubeconfig"
umask 077
if printf '%s' "$KUBECONFIG_CONTENT" | grep -q 'apiVersion'; then
  printf '%s\n' "$KUBECONFIG_CONTENT" > "$file"
else
  printf '%s' "$KUBECONFIG_CONTENT" | base64 -d > "$file"
fi
chmod 600 "$file"
{ grep -E '^[[:space:]]*(token|client-key-data|client-certificate-data|password|id-token|refresh-token|access-token|client-secret):' "$file" || true; } \
  | sed -E 's/^[^:]*:[[:space:]]*//; s/^"(.*)"$/\1/' \
  | while IFS= read -r value; do
      if [ -n "$value" ]; then echo "::add-mask::$value"; fi
    done
echo "KUBECONFIG=$file" >> "$GITHUB_ENV"
