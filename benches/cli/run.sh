#!/usr/bin/env bash
# The CLI at scale: ACCOUNTS client accounts under one partner, each with PER_ACCOUNT Link
# invitations, applied to the embedded portal by the release binary. Prints, for each of RUNS
# fresh runs, the first apply, a second (no-op) apply and the admission of a diff that fails on
# one bad document: wall time and peak RSS (GNU time), then the medians.
#
#   benches/cli/run.sh            # 100 x 100 = 10,101 objects, 3 runs
#   benches/cli/run.sh 20 100 3   # 2,000 invitations over 20 accounts
set -euo pipefail
accounts=${1:-100}
per_account=${2:-100}
runs=${3:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
binary=${CARGO_TARGET_DIR:-$root/target}/release/portal-operator
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/manifests"
printf 'apiVersion: access.portal.dev/v1alpha1\nkind: Account\nmetadata:\n  name: partner\nspec:\n  displayName: Partner\n  type: Partner\n' \
  > "$work/manifests/partner.yaml"
for ((a = 0; a < accounts; a++)); do
  {
    printf 'apiVersion: access.portal.dev/v1alpha1\nkind: Account\nmetadata:\n  name: client-%03d\nspec:\n  displayName: Client %03d\n  type: Client\n  parentRef:\n    name: partner\n  namespaces: [team-%03d]\n' "$a" "$a" "$a"
    for ((i = 0; i < per_account; i++)); do
      printf -- '---\napiVersion: access.portal.dev/v1alpha1\nkind: AdminInvitation\nmetadata:\n  name: admin-%03d\n  namespace: team-%03d\nspec:\n  accountRef:\n    name: client-%03d\n  email: admin-%03d@client-%03d.example\n  firstName: Admin\n  lastName: Number%03d\n  delivery: Link\n' "$i" "$a" "$a" "$i" "$a" "$i"
    done
  } > "$work/manifests/client-$a.yaml"
done
cp -r "$work/manifests" "$work/bad"
printf -- '---\napiVersion: access.portal.dev/v1alpha1\nkind: AdminInvitation\nmetadata:\n  name: bad\n  namespace: team-000\nspec:\n  accountRef:\n    name: client-000\n  email: not-an-email\n  firstName: A\n  lastName: B\n' \
  >> "$work/bad/client-0.yaml"

measure() { # label, expected exit code, command...
  local label=$1 expected=$2 code=0
  shift 2
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/stderr" || code=$?
  if [[ $code != "$expected" ]]; then
    echo "$label exited $code, not $expected:" >&2
    tail -5 "$work/stderr" >&2
    exit 1
  fi
  # GNU time puts "Command exited with non-zero status N" first when N is not 0.
  read -r seconds kilobytes < <(tail -1 "$work/time")
  printf '%s %s %s\n' "$label" "$seconds" "$((kilobytes / 1024))" | tee -a "$work/results"
}

for ((run = 1; run <= runs; run++)); do
  rm -rf "$work/run" && mkdir "$work/run" && cd "$work/run"
  measure first 0 "$binary" apply -f "$work/manifests"
  measure no-op 0 "$binary" apply -f "$work/manifests"
  measure admission 1 "$binary" diff -f "$work/bad"
done
echo "objects: $((1 + accounts + accounts * per_account)); medians of $runs runs (seconds, peak MiB):"
for label in first no-op admission; do
  grep "^$label " "$work/results" | awk '{print $2, $3}' | sort -n | awk -v label="$label" \
    '{s[NR]=$1} {m[NR]=$2} END {printf "  %-9s %6.2f s  %4d MiB\n", label, s[int((NR+1)/2)], m[int((NR+1)/2)]}'
done
