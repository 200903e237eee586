#!/usr/bin/env bash
# Monitoring as code: applies monitoring/ to a Google Cloud project with gcloud (and the
# Service Monitoring REST API for the SLOs, which gcloud has no command for).
#
#   PROJECT_ID=my-project REGION=us-central1 SERVICE=ion-api scripts/monitoring.sh apply
#   scripts/monitoring.sh render DIR    # write the files with the names filled in, apply nothing
#
# Optional: NOTIFICATION_CHANNELS=projects/P/notificationChannels/ID[,...] for the alert
# policies (gcloud beta monitoring channels list shows them).
#
# What it applies, each created or updated in place (so running it again is safe):
#   monitoring/metrics/*.json    log-based metrics      gcloud logging metrics create|update --config-from-file
#   monitoring/dashboards/*.json dashboards             gcloud monitoring dashboards create|update --config-from-file
#   monitoring/slo/*.json        the service and SLOs   POST/PATCH monitoring.googleapis.com/v3/.../serviceLevelObjectives
#   monitoring/alerts/*.json     alert policies         gcloud alpha monitoring policies create|update --policy-from-file
# The files name the service @SERVICE@, its region @REGION@, the project @PROJECT_ID@ and the
# Monitoring service that holds the SLOs @SLO_SERVICE@; this script fills them in. ion-host's
# OpenTelemetry metrics carry no Cloud Run service name: they are told apart by their `job` label
# (the OTel service.name, which deploy.yml sets to the service's name), @OTEL_JOB@: OTEL_JOB,
# default SERVICE.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

render() {
  local out=$1
  : "${PROJECT_ID:?set PROJECT_ID}" "${REGION:?set REGION}"
  SERVICE=${SERVICE:-ion-api}
  SLO_SERVICE=${SLO_SERVICE:-$SERVICE}
  OTEL_JOB=${OTEL_JOB:-$SERVICE}
  for dir in metrics dashboards slo alerts; do
    mkdir -p "$out/$dir"
    for file in monitoring/"$dir"/*.json; do
      sed -e "s|@PROJECT_ID@|$PROJECT_ID|g" -e "s|@REGION@|$REGION|g" \
        -e "s|@SERVICE@|$SERVICE|g" -e "s|@SLO_SERVICE@|$SLO_SERVICE|g" \
        -e "s|@OTEL_JOB@|$OTEL_JOB|g" \
        "$file" >"$out/$dir/$(basename "$file")"
      jq -e . "$out/$dir/$(basename "$file")" >/dev/null
    done
  done
}

# curl to the Monitoring API as the gcloud account; prints the body, fails on HTTP errors
# except those listed in $2 (e.g. 409).
api() {
  local method=$1 path=$2 body=${3:-} status
  status=$(curl -sS -o /tmp/ion-monitoring-api.json -w '%{http_code}' -X "$method" \
    -H "Authorization: Bearer $(gcloud auth print-access-token)" \
    -H "x-goog-user-project: $PROJECT_ID" \
    -H 'content-type: application/json' \
    ${body:+--data-binary "@$body"} \
    "https://monitoring.googleapis.com/v3/$path")
  echo "$status"
}

apply() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  render "$work"
  local project=(--project "$PROJECT_ID")

  echo "==> log-based metrics"
  for file in "$work"/metrics/*.json; do
    name=$(jq -r .name "$file")
    if gcloud logging metrics describe "$name" "${project[@]}" >/dev/null 2>&1; then
      gcloud logging metrics update "$name" --config-from-file="$file" "${project[@]}" --quiet
    else
      gcloud logging metrics create "$name" --config-from-file="$file" "${project[@]}"
    fi
  done

  echo "==> dashboards"
  for file in "$work"/dashboards/*.json; do
    title=$(jq -r .displayName "$file")
    id=$(gcloud monitoring dashboards list "${project[@]}" \
      --filter="displayName=\"$title\"" --format='value(name)' | head -n1)
    if [ -n "$id" ]; then
      etag=$(gcloud monitoring dashboards describe "$id" "${project[@]}" --format='value(etag)')
      jq --arg etag "$etag" '. + {etag: $etag}' "$file" >"$file.update"
      gcloud monitoring dashboards update "$id" --config-from-file="$file.update" "${project[@]}" --quiet
    else
      gcloud monitoring dashboards create --config-from-file="$file" "${project[@]}"
    fi
  done

  echo "==> service and SLOs"
  local parent="projects/$PROJECT_ID/services"
  status=$(api POST "$parent?serviceId=$SLO_SERVICE" "$work/slo/service.json")
  case $status in
    200 | 409) ;;
    *) cat /tmp/ion-monitoring-api.json && exit 1 ;;
  esac
  for file in "$work"/slo/*.json; do
    slo=$(basename "$file" .json)
    [ "$slo" = service ] && continue
    status=$(api POST "$parent/$SLO_SERVICE/serviceLevelObjectives?serviceLevelObjectiveId=$slo" "$file")
    if [ "$status" = 409 ]; then
      status=$(api PATCH "$parent/$SLO_SERVICE/serviceLevelObjectives/$slo?updateMask=displayName,goal,rollingPeriod,serviceLevelIndicator" "$file")
    fi
    if [ "$status" != 200 ]; then
      cat /tmp/ion-monitoring-api.json
      exit 1
    fi
    echo "SLO $slo applied"
  done

  echo "==> alert policies"
  local channels=()
  if [ -n "${NOTIFICATION_CHANNELS:-}" ]; then
    channels=(--notification-channels="$NOTIFICATION_CHANNELS")
  fi
  for file in "$work"/alerts/*.json; do
    title=$(jq -r .displayName "$file")
    id=$(gcloud alpha monitoring policies list "${project[@]}" \
      --filter="displayName=\"$title\"" --format='value(name)' | head -n1)
    if [ -n "$id" ]; then
      gcloud alpha monitoring policies update "$id" --policy-from-file="$file" "${project[@]}" --quiet
    else
      gcloud alpha monitoring policies create --policy-from-file="$file" "${channels[@]}" "${project[@]}"
    fi
  done
}

case "${1:-}" in
  apply) apply ;;
  render) [ -n "${2:-}" ] || usage; render "$2" ;;
  *) usage ;;
esac
