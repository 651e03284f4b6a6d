#!/bin/sh
# Makes each knative/secrets/<name>.env from <name>.env.example: every value `change-me` becomes 48 random hex
# characters (URL-safe: the Redis passwords go into redis:// URLs); other values are kept as written (user names,
# ANTHROPIC_API_KEY, which you fill in). An existing .env is left alone, so re-running never rotates a credential.
#   sh knative/secrets/generate.sh [DIR]      (DIR defaults to this script's directory)
set -eu
dir=${1:-$(dirname "$0")}
for example in "$dir"/*.env.example; do
  target=${example%.example}
  [ -e "$target" ] && continue
  umask 077
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      *=change-me) printf '%s=%s\n' "${line%%=*}" "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <"$example" >"$target"
  echo "wrote $target"
done
