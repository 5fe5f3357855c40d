#!/usr/bin/env bash
# Copy into the Helm chart what it packages from the rest of the repository, since a chart can
# read only its own files:
#
#   rules/*.yaml                       -> helm/kafka-autopilot/files/rules/     (the PrometheusRule)
#   policies/*.rego, policies/data.yaml -> helm/kafka-autopilot/files/policies/ (the policies ConfigMap;
#                                          *_test.rego is copied too and left out by the template)
#   deploy/crds/*.yaml                 -> helm/kafka-autopilot/crds/            (installed by Helm)
#   Cargo.toml's version               -> Chart.yaml's appVersion
#
# Promtool unit-test files (rules/*_test.yaml, rules/*.test.yaml) are not rule files and are not
# copied. Each destination directory ends up holding exactly the copies: stale files are removed.
#
#   scripts/sync-chart.sh          update the chart
#   scripts/sync-chart.sh --check  change nothing; exit 1 and list the differences if the chart
#                                  is out of date (tests/helm.rs runs this)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$REPO/helm/kafka-autopilot"
CHECK=0
case "${1:-}" in
  "") ;;
  --check) CHECK=1 ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

[[ -f "$CHART/Chart.yaml" ]] || { echo "sync-chart: $CHART/Chart.yaml not found" >&2; exit 1; }

# The wanted content, built in a temporary tree with the chart's layout.
WANT="$(mktemp -d)"
trap 'rm -rf "$WANT"' EXIT
mkdir -p "$WANT/files/rules" "$WANT/files/policies" "$WANT/crds"
shopt -s nullglob
for f in "$REPO"/rules/*.yaml; do
  case "$(basename "$f")" in *_test.yaml | *.test.yaml) continue ;; esac
  cp "$f" "$WANT/files/rules/"
done
for f in "$REPO"/policies/*.rego "$REPO"/policies/data.yaml; do
  [[ -f "$f" ]] && cp "$f" "$WANT/files/policies/"
done
for f in "$REPO"/deploy/crds/*.yaml; do
  cp "$f" "$WANT/crds/"
done
shopt -u nullglob

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$REPO/Cargo.toml" | head -n 1)
[[ -n "$version" ]] || { echo "sync-chart: no version in $REPO/Cargo.toml" >&2; exit 1; }
sed "s/^appVersion:.*/appVersion: \"$version\"/" "$CHART/Chart.yaml" > "$WANT/Chart.yaml"
grep -q "^appVersion: \"$version\"$" "$WANT/Chart.yaml" \
  || { echo "sync-chart: $CHART/Chart.yaml has no appVersion line" >&2; exit 1; }

# Git keeps no empty directory: a missing destination counts as empty.
same() { if [[ -d "$CHART/$1" ]]; then diff -r "$WANT/$1" "$CHART/$1" > /dev/null 2>&1; else [[ -z "$(ls -A "$WANT/$1")" ]]; fi; }

differs=0
for d in files/rules files/policies crds; do
  if ! same "$d"; then
    differs=1
    if ((CHECK)); then
      echo "sync-chart: helm/kafka-autopilot/$d differs from its sources:" >&2
      diff -r "$WANT/$d" "$CHART/$d" 2>&1 | sed "s#$WANT/##; s#$CHART/##" | head -n 40 >&2 || true
    else
      rm -rf "${CHART:?}/$d"
      mkdir -p "$(dirname "$CHART/$d")"
      cp -r "$WANT/$d" "$CHART/$d"
      echo "sync-chart: updated helm/kafka-autopilot/$d ($(ls "$CHART/$d" | wc -l) files)"
    fi
  fi
done
if ! cmp -s "$WANT/Chart.yaml" "$CHART/Chart.yaml"; then
  differs=1
  if ((CHECK)); then
    echo "sync-chart: Chart.yaml appVersion is not Cargo.toml's version $version" >&2
  else
    cp "$WANT/Chart.yaml" "$CHART/Chart.yaml"
    echo "sync-chart: Chart.yaml appVersion set to $version"
  fi
fi

if ((CHECK)); then
  if ((differs)); then
    echo "sync-chart: the chart is out of date: run scripts/sync-chart.sh" >&2
    exit 1
  fi
  echo "sync-chart: the chart is up to date"
elif ((!differs)); then
  echo "sync-chart: already up to date"
fi
