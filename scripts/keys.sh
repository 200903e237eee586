#!/usr/bin/env bash
# Manages the service's API keys through its admin API (/admin/keys), the same way under
# `spin up`, a local ion-host and Cloud Run, and shows a caller's own standing (GET /usage).
#
#   scripts/keys.sh create --name NAME [--requests-per-minute N] [--daily-tokens N]
#   scripts/keys.sh list
#   scripts/keys.sh show ID
#   scripts/keys.sh revoke ID
#   scripts/keys.sh usage [KEY | -]     # no KEY: $ION_API_KEY, else as an anonymous caller
#
# --json (anywhere) prints the service's JSON as it came instead of the summary. `create`
# prints the new key alone on stdout (so `key=$(scripts/keys.sh create --name ci)` works) and
# says the rest on stderr; the service shows a key only this once.
#
# Environment:
#   ION_URL          the service; default http://127.0.0.1:8080
#   ION_ADMIN_TOKEN  the service's admin_token (SPIN_VARIABLE_ADMIN_TOKEN); every command but
#                    `usage` needs it. Read from the environment only: never a command-line
#                    argument, so it stays out of shell history and `ps`.
#   ION_ID_TOKEN     a private Cloud Run service (--no-allow-unauthenticated) also wants a Google
#                    identity token of a caller with roles/run.invoker:
#                      ION_ID_TOKEN=$(gcloud auth print-identity-token) scripts/keys.sh list
#                    It is sent as X-Serverless-Authorization, which Cloud Run checks for IAM,
#                    leaving Authorization (the admin token or API key) to the service.
#   ION_API_KEY      the key `usage` reports on when none is given
#
# X-Serverless-Authorization, checked 2026-12-03: Cloud Run's service-to-service authentication
# documentation ("acquire the token") lets a caller send the identity token in
# X-Serverless-Authorization instead of Authorization; when both are present Cloud Run checks
# only X-Serverless-Authorization for IAM and passes Authorization through to the container
# unchanged (as Cloud Run's maintainers confirmed publicly, and proxies in front of Cloud Run
# rely on).
#
# The tokens are never in a process's argv (nor is a key, unless one is given to `usage` as an
# argument: ION_API_KEY or `-` keep it out): curl reads its headers from a pipe (`-H @<(...)`)
# written by bash's builtin printf, and the answers are held in memory only.
#
# Exit status:
#   0  done
#   1  the service answered another error (printed)
#   2  wrong usage
#   3  missing setup: ION_ADMIN_TOKEN unset, ION_URL malformed, curl or python3 not installed
#   4  refused: 401 or 403 (wrong admin token or API key; or Cloud Run IAM refused the caller)
#   5  not found: 404 (no key with that id; or the admin API is off: admin_token unset)
#   6  the service could not be reached (connection failed, timed out)
set -euo pipefail

readonly EXIT_ERROR=1 EXIT_USAGE=2 EXIT_SETUP=3 EXIT_REFUSED=4 EXIT_NOT_FOUND=5 EXIT_UNREACHABLE=6

me=$(basename "$0")

usage() {
  cat <<EOF
usage: $me create --name NAME [--requests-per-minute N] [--daily-tokens N]
       $me list
       $me show ID
       $me revoke ID
       $me usage [KEY | -]
  --json   print the service's JSON as it came
  N = 0 means no limit; unset, the service's key_requests_per_minute / key_daily_tokens apply.
  ID is a key's 12-digit id (or its prefix ion_sk_ID), as 'list' shows.
  usage: KEY '-' reads the key from stdin; none: \$ION_API_KEY, else the anonymous standing.
environment: ION_URL (default http://127.0.0.1:8080), ION_ADMIN_TOKEN, ION_ID_TOKEN, ION_API_KEY
EOF
}

die() {
  local status=$1
  shift
  echo "$me: $*" >&2
  exit "$status"
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$EXIT_SETUP" "$1 is needed and not installed"
}

# --json may come anywhere (but as an option's value); the rest is the command and its arguments.
json_out=false
args=()
previous=""
for arg in "$@"; do
  case "$previous" in
    --name | --requests-per-minute | --daily-tokens) args+=("$arg") ;;
    *) if [ "$arg" = --json ]; then json_out=true; else args+=("$arg"); fi ;;
  esac
  previous=$arg
done
set -- "${args[@]+"${args[@]}"}"
[ $# -gt 0 ] || {
  usage >&2
  exit "$EXIT_USAGE"
}
command=$1
shift
case "$command" in
  -h | --help | help)
    usage
    exit 0
    ;;
esac

need curl
need python3

url=${ION_URL:-http://127.0.0.1:8080}
url=${url%/}
case "$url" in
  http://* | https://*) ;;
  *) die "$EXIT_SETUP" "ION_URL must start with http:// or https:// (got '$url')" ;;
esac
# The admin token and keys are bearer secrets: plain HTTP only to this machine.
host=${url#*://}
host=${host%%/*}
case "$url" in
  http://*)
    case "$host" in
      127.0.0.1 | 127.0.0.1:* | localhost | localhost:* | "[::1]" | "[::1]:"*) ;;
      *) echo "$me: warning: $url is plain HTTP; the token crosses the network unencrypted" >&2 ;;
    esac
    ;;
esac

# The headers, one per line, for curl's -H @FILE. Only builtins touch the secrets.
# $1: what goes in Authorization (empty for none).
headers() {
  if [ -n "$1" ]; then printf 'Authorization: Bearer %s\n' "$1"; fi
  if [ -n "${ION_ID_TOKEN:-}" ]; then
    printf 'X-Serverless-Authorization: Bearer %s\n' "$ION_ID_TOKEN"
  fi
  printf 'Accept: application/json\n'
}

# call METHOD PATH BEARER [BODY]: sets $status and $body. Exits 6 if the service cannot be reached.
call() {
  local method=$1 path=$2 bearer=$3 data=${4-} response rc=0
  local extra=()
  if [ $# -ge 4 ]; then
    extra=(-H 'Content-Type: application/json' --data-binary @-)
  fi
  response=$(printf '%s' "$data" |
    curl -sS --max-time 30 --proto '=http,https' -X "$method" \
      -H @<(headers "$bearer") "${extra[@]+"${extra[@]}"}" \
      -w '\n%{http_code}' "$url$path") || rc=$?
  if [ "$rc" -ne 0 ]; then
    die "$EXIT_UNREACHABLE" "$method $url$path: could not reach the service (curl exit $rc)"
  fi
  status=${response##*$'\n'}
  body=${response%$'\n'*}
  [ "$body" != "$response" ] || body=""
}

# Prints the service's error for a non-2xx answer and exits with its meaning.
fail() {
  local what=$1 hint=${2:-}
  local message
  message=$(printf '%s' "$body" | json_tool error)
  echo "$me: $what answered $status: $message" >&2
  if [ -n "$hint" ]; then echo "$me: $hint" >&2; fi
  case "$status" in
    401 | 403) exit "$EXIT_REFUSED" ;;
    404) exit "$EXIT_NOT_FOUND" ;;
    *) exit "$EXIT_ERROR" ;;
  esac
}

refused_hint() {
  if [ "$status" = 401 ] || [ "$status" = 403 ]; then
    case "$body" in
      *invalid_admin_token* | *invalid_api_key*) ;;
      *) echo "a private Cloud Run service needs ION_ID_TOKEN=\$(gcloud auth print-identity-token) (and roles/run.invoker)" ;;
    esac
  fi
}

require_admin_token() {
  [ -n "${ION_ADMIN_TOKEN:-}" ] ||
    die "$EXIT_SETUP" "set ION_ADMIN_TOKEN to the service's admin_token (read -rs ION_ADMIN_TOKEN; export ION_ADMIN_TOKEN)"
}

# A key id from ID or ion_sk_ID; never a whole key (that is a secret, and not an id).
key_id() {
  local id=${1#ion_sk_}
  [[ "$id" =~ ^[0-9a-f]{12}$ ]] ||
    die "$EXIT_USAGE" "'$1' is not a key id: 12 hex digits (or ion_sk_ and them), as '$me list' shows"
  printf '%s' "$id"
}

whole_number() {
  [[ "$2" =~ ^[0-9]+$ ]] && [ "${#2}" -le 18 ] ||
    die "$EXIT_USAGE" "$1 wants a whole number >= 0 (0 = no limit), got '$2'"
}

# The JSON work, in Python: `json_tool MODE [ARGS]`, the service's answer (if any) on stdin.
#   request NAME RPM TOKENS   the body of POST /admin/keys
#   error                     one line saying what a non-2xx answer's body says
#   list | show | usage       a summary of the answer
#   created                   the new key on stdout, what it is on stderr
read -r -d '' JSON_TOOL <<'PYTHON' || true
import json, re, sys

mode, args = sys.argv[1], sys.argv[2:]
me = "scripts/keys.sh"


def limit(n, unit):
    return "no limit" if not n else f"{n:,} {unit}"


def usage_lines(u):
    if u.get("requests_per_minute") is None:
        yield "requests: no per-minute limit"
    else:
        yield (f"requests: {u['requests_remaining']} of {u['requests_per_minute']} a minute left;"
               f" all back in {u['requests_reset_seconds']} s")
    if u.get("daily_token_budget") is None:
        yield f"tokens:   {u['tokens_used']:,} used on {u['date']} (UTC), no daily budget"
    else:
        yield (f"tokens:   {u['tokens_used']:,} of {u['daily_token_budget']:,} used on"
               f" {u['date']} (UTC), {u['tokens_remaining']:,} left; resets {u['resets_at']}")


def error(text):
    try:
        doc = json.loads(text)
    except ValueError:
        # Not the service's answer (Cloud Run's own, a proxy's): its first lines of text.
        text = re.sub(r"<[^>]*>", " ", text)
        lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()][:5]
        return " / ".join(lines)[:400] or "(empty body)"
    if not isinstance(doc, dict):
        return text[:400]
    err = doc.get("error")
    if isinstance(err, dict):  # the OpenAI shape
        return f"{err.get('code') or err.get('type')}: {err.get('message')}"
    if err is not None:
        return f"{doc.get('code', 'error')}: {err}"
    if isinstance(doc.get("detail"), list):  # 422: what was wrong with the request
        parts = []
        for d in doc["detail"]:
            loc = ".".join(str(p) for p in d.get("loc", []))
            parts.append(f"{loc}: {d.get('msg')}" if loc else str(d.get("msg")))
        return "invalid request: " + "; ".join(parts)
    return text[:400]


if mode == "request":
    name, rpm, tokens = args
    body = {"name": name}
    if rpm:
        body["requests_per_minute"] = int(rpm)
    if tokens:
        body["daily_token_budget"] = int(tokens)
    print(json.dumps(body))
    sys.exit()

text = sys.stdin.read()
if mode == "error":
    print(error(text))
    sys.exit()
doc = json.loads(text)
if mode == "list":
    if not doc["keys"]:
        print("no keys")
    rows = [("ID", "NAME", "REQ/MIN", "TOKENS/DAY", "CREATED")] if doc["keys"] else []
    for k in doc["keys"]:
        rows.append((k["id"], k["name"], str(k["requests_per_minute"] or "-"),
                     f"{k['daily_token_budget']:,}" if k["daily_token_budget"] else "-",
                     k["created_at"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)] if rows else []
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
elif mode == "show":
    print(f"id:       {doc['id']} ({doc['prefix']}_...)")
    print(f"name:     {doc['name']}")
    print(f"created:  {doc['created_at']}")
    print(f"limits:   {limit(doc['requests_per_minute'], 'requests a minute')},"
          f" {limit(doc['daily_token_budget'], 'tokens a day')}")
    print("\n".join(usage_lines(doc["usage"])))
elif mode == "usage":
    key = doc.get("key")
    print("caller:   " + (f"key {key['id']} ({key['name']})" if key
                          else "anonymous (known by its address)"))
    print("\n".join(usage_lines(doc["usage"])))
elif mode == "created":
    err = sys.stderr
    print(f"Created key {doc['id']} ({doc['name']}):"
          f" {limit(doc['requests_per_minute'], 'requests a minute')},"
          f" {limit(doc['daily_token_budget'], 'tokens a day')}. The key:\n", file=err)
    err.flush()
    print(doc["key"], flush=True)
    print("\nIt is shown only this once: store it now (in a secret manager, never in git).\n"
          "Callers send it as 'Authorization: Bearer <key>' (the OpenAI SDKs' api_key).\n"
          f"Revoke it with: {me} revoke {doc['id']}", file=err)
PYTHON

json_tool() {
  python3 -c "$JSON_TOOL" "$@"
}

print_answer() {
  if [ "$json_out" = true ]; then
    printf '%s\n' "$body"
  else
    printf '%s' "$body" | json_tool "$1"
  fi
}

case "$command" in
  create)
    name="" rpm="" tokens="" have_name=false
    while [ $# -gt 0 ]; do
      case "$1" in
        --name | --requests-per-minute | --daily-tokens)
          [ $# -ge 2 ] || die "$EXIT_USAGE" "$1 wants a value"
          case "$1" in
            --name) name=$2 have_name=true ;;
            --requests-per-minute) whole_number "$1" "$2" && rpm=$2 ;;
            --daily-tokens) whole_number "$1" "$2" && tokens=$2 ;;
          esac
          shift 2
          ;;
        --name=* | --requests-per-minute=* | --daily-tokens=*)
          set -- "${1%%=*}" "${1#*=}" "${@:2}"
          ;;
        -h | --help)
          usage
          exit 0
          ;;
        *) die "$EXIT_USAGE" "create: unexpected '$1' (see $me --help)" ;;
      esac
    done
    [ "$have_name" = true ] || die "$EXIT_USAGE" "create needs --name NAME (who or what the key is for)"
    request=$(json_tool request "$name" "$rpm" "$tokens")
    require_admin_token
    call POST /admin/keys "$ION_ADMIN_TOKEN" "$request"
    if [ "$status" != 201 ]; then
      hint=$(refused_hint)
      [ "$status" != 404 ] || hint="the admin API is off: set the service's admin_token (SPIN_VARIABLE_ADMIN_TOKEN)"
      fail "POST /admin/keys" "$hint"
    fi
    print_answer created
    ;;
  list)
    [ $# -eq 0 ] || die "$EXIT_USAGE" "list takes no arguments"
    require_admin_token
    call GET /admin/keys "$ION_ADMIN_TOKEN"
    if [ "$status" != 200 ]; then
      hint=$(refused_hint)
      [ "$status" != 404 ] || hint="the admin API is off: set the service's admin_token (SPIN_VARIABLE_ADMIN_TOKEN)"
      fail "GET /admin/keys" "$hint"
    fi
    print_answer list
    ;;
  show | revoke)
    [ $# -eq 1 ] || die "$EXIT_USAGE" "$command takes one key id (see $me list)"
    id=$(key_id "$1")
    if [ "$command" = show ]; then method=GET; else method=DELETE; fi
    require_admin_token
    call "$method" "/admin/keys/$id" "$ION_ADMIN_TOKEN"
    case "$status" in
      200 | 204) ;;
      *)
        hint=$(refused_hint)
        case "$body" in *key_not_found*) hint="no key $id: it may have been revoked ($me list)" ;; esac
        fail "$method /admin/keys/$id" "$hint"
        ;;
    esac
    if [ "$command" = show ]; then
      print_answer show
    else
      echo "revoked key $id: every instance refuses it from its next request"
    fi
    ;;
  usage)
    [ $# -le 1 ] || die "$EXIT_USAGE" "usage takes at most one key"
    key=${ION_API_KEY:-}
    if [ $# -eq 1 ]; then
      if [ "$1" = - ]; then
        IFS= read -r key || [ -n "$key" ] || die "$EXIT_USAGE" "usage -: no key on stdin"
      else
        key=$1
      fi
    fi
    key=${key//[[:space:]]/}
    call GET /usage "$key"
    [ "$status" = 200 ] || fail "GET /usage" "$(refused_hint)"
    print_answer usage
    ;;
  *)
    usage >&2
    die "$EXIT_USAGE" "unknown command '$command'"
    ;;
esac
