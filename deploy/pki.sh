#!/usr/bin/env bash
# pki.sh: creates the private PKI of a NIRC deployment with openssl.
#
# Every NIRC link is mutual TLS against one private CA, and a peer's identity
# is read from its certificate (SPEC.md section 4): "controller:<name>",
# "site:<slug>", or "operator:<name>" with the role in OU. This script makes
# that CA and the leaf certificates, all ECDSA P-256 with SHA-256.
#
# It is idempotent: an existing CA is reused and existing certificates are
# kept (after checking that they belong to this CA, match their key and
# carry the requested identity), so the demo and the tests can call it
# every time. Concurrent runs on one DIR are serialised with a lock file.
#
# Leaves are signed with `openssl ca` from a throw-away configuration,
# because OpenSSL 3.0 (Debian 12) has no way to set an explicit start and
# end date with `openssl x509 -req`, and --expired needs exactly that. The
# CA's database (what it issued and revoked) is kept in DIR/ca-db, and
# every run rewrites DIR/crl.pem from it, so the revocation list nircd
# reads ([tls] crl) never runs out while the script is used.
set -euo pipefail

readonly PROG=pki.sh
readonly DEFAULT_CA_NAME="NIRC private CA"
readonly CA_DAYS=3650    # ten years
readonly LEAF_DAYS=825   # the CA/Browser Forum ceiling, a sane default here too
readonly CRL_DAYS=365    # nircd refuses a CRL past its next update: re-run within a year

usage() {
  cat <<EOF
Usage: $PROG DIR [options]

Creates (or completes) a private PKI for NIRC in DIR.

Options:
  --sites SLUG[,SLUG...]    site certificates (CN site:<slug>); repeatable
  --scenario FILE           site certificates for every site of a scenario JSON
  --operator NAME:ROLE      operator certificate, ROLE is viewer|operator|admin;
                            repeatable
  --controller NAME         controller certificate (CN controller:<name>);
                            repeatable; default: one named "nircd"
  --controller-san SAN      extra subjectAltName for controller certificates,
                            e.g. DNS:nirc1.example.org or IP:10.0.0.5; repeatable
  --ca-name NAME            CN of a new CA (default "$DEFAULT_CA_NAME"); use
                            another DIR to make a second, unrelated CA
  --expired                 issue leaf certificates that have already expired
                            (for tests of certificate checking)
  --revoke NAME             revoke the leaf DIR/NAME.crt (NAME as in the file
                            names: site-hubei, operator-alice, controller-nircd;
                            site:hubei works too) and move it and its key to
                            DIR/revoked/; repeatable. Revocations run before
                            issuing, so "--revoke site-hubei --sites hubei"
                            replaces a certificate in one go
  -h, --help                show this help

Every SLUG and NAME is a lower-case letter followed by at most 30 lower-case
letters, digits or hyphens (^[a-z][a-z0-9-]{0,30}\$), the rule nircd applies.

Files: DIR/ca.{crt,key}, DIR/controller-<name>.{crt,key},
DIR/site-<slug>.{crt,key}, DIR/operator-<name>.{crt,key}; DIR/crl.pem, the
CA's revocation list (nircd.conf [tls] crl), rewritten by every run and valid
for $CRL_DAYS days; DIR/ca-db/, the CA's record of what it issued and revoked.
Keys are mode 600. One line is printed per file created or certificate revoked.
After --revoke, send nircd SIGHUP: it reloads crl.pem and closes the links of
revoked certificates.
EOF
}

die() {
  echo "$PROG: error: $*" >&2
  exit 1
}

usage_error() {
  echo "$PROG: $*" >&2
  echo "Run '$PROG --help' for usage." >&2
  exit 2
}

# ---- arguments ------------------------------------------------------------

DIR=""
SITE_LISTS=()
SCENARIO=""
OPERATORS=()
CONTROLLERS=()
CONTROLLER_SANS=()
CA_NAME=""
EXPIRED=0
REVOKE=()

need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then usage_error "option $1 needs a value"; fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --sites) need_value "$@"; SITE_LISTS+=("$2"); shift 2 ;;
    --sites=*) SITE_LISTS+=("${1#*=}"); shift ;;
    --scenario) need_value "$@"; SCENARIO=$2; shift 2 ;;
    --scenario=*) SCENARIO=${1#*=}; shift ;;
    --operator) need_value "$@"; OPERATORS+=("$2"); shift 2 ;;
    --operator=*) OPERATORS+=("${1#*=}"); shift ;;
    --controller) need_value "$@"; CONTROLLERS+=("$2"); shift 2 ;;
    --controller=*) CONTROLLERS+=("${1#*=}"); shift ;;
    --controller-san) need_value "$@"; CONTROLLER_SANS+=("$2"); shift 2 ;;
    --controller-san=*) CONTROLLER_SANS+=("${1#*=}"); shift ;;
    --ca-name) need_value "$@"; CA_NAME=$2; shift 2 ;;
    --ca-name=*) CA_NAME=${1#*=}; shift ;;
    --expired) EXPIRED=1; shift ;;
    --revoke) need_value "$@"; REVOKE+=("$2"); shift 2 ;;
    --revoke=*) REVOKE+=("${1#*=}"); shift ;;
    -h | --help) usage; exit 0 ;;
    --)
      shift
      for arg in "$@"; do
        [ -z "$DIR" ] || usage_error "unexpected argument '$arg' (DIR is already '$DIR')"
        DIR=$arg
      done
      break ;;
    -*) usage_error "unknown option '$1'" ;;
    *) [ -z "$DIR" ] || usage_error "unexpected argument '$1' (DIR is already '$DIR')"
       DIR=$1; shift ;;
  esac
done

[ -n "$DIR" ] || usage_error "missing DIR, the directory that holds (or will hold) the PKI"
if [ "${#SITE_LISTS[@]}" -gt 0 ] && [ -n "$SCENARIO" ]; then
  usage_error "use either --sites or --scenario, not both"
fi
command -v openssl >/dev/null || die "openssl not found; install it (deploy/install-deps.sh)"

# ---- validation -----------------------------------------------------------

# One definition of a name, for sites, operators and controllers alike:
# NAME_RE below is nirc_slug_valid() in common/util.c, which nircd and the
# agent apply to the CN of every certificate (site:<slug>,
# operator:<name>, controller:<name>). A name this script accepts is one
# nircd accepts, and the other way round: tests/data/names.txt lists good
# and bad names that tests/unit/test_names.c checks against the C side and
# tests/integration/test_security2.py against this script.
readonly NAME_RE='^[a-z][a-z0-9-]{0,30}$'
readonly NAME_RULE='a lower-case letter, then up to 30 lower-case letters, digits or hyphens'
valid_slug() { [[ $1 =~ $NAME_RE ]]; }
valid_name() { [[ $1 =~ $NAME_RE ]]; }

if [ -n "$CA_NAME" ]; then
  if ! [[ $CA_NAME =~ ^[A-Za-z0-9][A-Za-z0-9\ ._-]*$ ]] || [ "${#CA_NAME}" -gt 64 ]; then
    die "invalid --ca-name '$CA_NAME': use letters, digits, spaces, '.', '_' or '-' (at most 64)"
  fi
fi

declare -A SEEN_SITE=()
SITES=()
add_site() {
  valid_slug "$1" || die "invalid site slug '$1': use $NAME_RULE (${NAME_RE})"
  if [ -z "${SEEN_SITE[$1]:-}" ]; then
    SEEN_SITE[$1]=1
    SITES+=("$1")
  fi
}

for list in "${SITE_LISTS[@]}"; do
  IFS=',' read -r -a parts <<<"$list"
  [ "${#parts[@]}" -gt 0 ] || die "--sites '$list' names no site"
  for s in "${parts[@]}"; do add_site "$s"; done
done

if [ -n "$SCENARIO" ]; then
  [ -r "$SCENARIO" ] || die "cannot read scenario file '$SCENARIO'"
  if command -v jq >/dev/null; then
    jq_slugs='.sites[] | .slug | if type == "string" then . else error("a site has no string \"slug\"") end'
    if ! slugs=$(jq -r "$jq_slugs" "$SCENARIO" 2>/dev/null); then
      why=$(jq -r "$jq_slugs" "$SCENARIO" 2>&1 >/dev/null || true)
      die "cannot read site slugs from '$SCENARIO' (${why//$'\n'/ }); is it a scenario JSON with a \"sites\" array?"
    fi
  elif command -v python3 >/dev/null; then
    if ! slugs=$(python3 -c 'import json, sys
for s in json.load(open(sys.argv[1], encoding="utf-8"))["sites"]:
    print(s["slug"])' "$SCENARIO" 2>&1); then
      last=${slugs##*$'\n'}   # the exception line of the traceback
      die "cannot read site slugs from '$SCENARIO' (python3: ${last:-failed without output}); is it a scenario JSON with a \"sites\" array?"
    fi
  else
    die "--scenario needs jq or python3 to read JSON; install jq, or pass --sites"
  fi
  [ -n "$slugs" ] || die "scenario '$SCENARIO' has no sites"
  while IFS= read -r s; do add_site "$s"; done <<<"$slugs"
fi

OP_NAMES=()
OP_ROLES=()
declare -A SEEN_OP=()
for spec in "${OPERATORS[@]}"; do
  [[ $spec == *:* ]] || die "invalid --operator '$spec': write NAME:ROLE, e.g. alice:admin"
  name=${spec%:*}
  role=${spec##*:}
  valid_name "$name" ||
    die "invalid operator name '$name': use $NAME_RULE (${NAME_RE})"
  case "$role" in
    viewer | operator | admin) ;;
    *) die "invalid role '$role' for operator '$name': use viewer, operator or admin" ;;
  esac
  if [ -n "${SEEN_OP[$name]:-}" ]; then
    [ "${SEEN_OP[$name]}" = "$role" ] || die "operator '$name' is given twice with different roles"
    continue
  fi
  SEEN_OP[$name]=$role
  OP_NAMES+=("$name")
  OP_ROLES+=("$role")
done

[ "${#CONTROLLERS[@]}" -gt 0 ] || CONTROLLERS=(nircd)
for name in "${CONTROLLERS[@]}"; do
  valid_name "$name" ||
    die "invalid controller name '$name': use $NAME_RULE (${NAME_RE})"
done
REVOKE_NAMES=()
for name in "${REVOKE[@]}"; do
  # "site:hubei", the certificate's CN, names the file site-hubei.
  base=${name/:/-}
  [[ $base =~ ^(site|operator|controller)-[a-z][a-z0-9-]{0,30}$ ]] ||
    die "invalid --revoke '$name': name a leaf as its files are named, e.g. site-hubei or operator-alice"
  REVOKE_NAMES+=("$base")
done

for san in "${CONTROLLER_SANS[@]}"; do
  [[ $san =~ ^(DNS:[A-Za-z0-9*][A-Za-z0-9.-]*|IP:[0-9A-Fa-f:.]+|URI:[A-Za-z][A-Za-z0-9+.-]*:[^,[:space:]]+)$ ]] ||
    die "invalid --controller-san '$san': use DNS:name, IP:address or URI:scheme:rest"
done

# ---- working area ---------------------------------------------------------

if [ ! -d "$DIR" ]; then
  # The directory holds private keys: nobody else needs to list it.
  # A concurrent run may create it first; that is fine.
  if ! { mkdir -p -- "$(dirname -- "$DIR")" && mkdir -m 700 -- "$DIR"; } 2>/dev/null && [ ! -d "$DIR" ]; then
    die "cannot create '$DIR'; check the parent directory's permissions"
  fi
fi
[ -w "$DIR" ] || die "'$DIR' is not writable by $(id -un)"

exec 9>"$DIR/.pki.lock"
if command -v flock >/dev/null; then
  flock -w 120 9 || die "another $PROG is still running on '$DIR' (waited 120 s for $DIR/.pki.lock)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nirc-pki.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/issued"

# The CA's database: `openssl ca` records every leaf it signs here, marks
# revoked ones, and -gencrl lists those. Leaves issued before this
# directory existed are added when they are revoked.
CA_DB=$DIR/ca-db
[ -d "$CA_DB" ] || mkdir -m 700 -- "$CA_DB" || die "cannot create '$CA_DB'"
[ -e "$CA_DB/index.txt" ] || : >"$CA_DB/index.txt"
[ -e "$CA_DB/index.txt.attr" ] || echo "unique_subject = no" >"$CA_DB/index.txt.attr"
[ -e "$CA_DB/crlnumber" ] || echo 1000 >"$CA_DB/crlnumber"

CA_KEY=$DIR/ca.key
CA_CRT=$DIR/ca.crt
CRL=$DIR/crl.pem
CNF=$WORK/openssl.cnf
# The configuration refers to files by absolute path only, so it does not
# matter where openssl runs.
cat >"$CNF" <<EOF
[ req ]
distinguished_name = req_dn
prompt = no
string_mask = utf8only
utf8 = yes

[ req_dn ]
CN = unused

[ v3_ca ]
# pathlen:0: this CA signs leaves only. A CA:TRUE certificate it signed by
# mistake cannot issue certificates anyone accepts (nircd and the agent
# also refuse any chain with an intermediate, and any CA:TRUE peer).
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ ca ]
default_ca = nirc_ca

[ nirc_ca ]
database = $CA_DB/index.txt
crlnumber = $CA_DB/crlnumber
default_crl_days = $CRL_DAYS
new_certs_dir = $WORK/issued
certificate = $CA_CRT
private_key = $CA_KEY
rand_serial = yes
default_md = sha256
default_days = $LEAF_DAYS
policy = nirc_policy
unique_subject = no
copy_extensions = none
email_in_dn = no
preserve = no

[ nirc_policy ]
organizationalUnitName = optional
commonName = supplied
EOF

CREATED=0
KEPT=0

created() {
  echo "created $1"
  CREATED=$((CREATED + 1))
}

# Runs a command, keeping its chatter out of the way unless it fails.
run() {
  local what=$1
  shift
  if ! "$@" >"$WORK/out.log" 2>&1; then
    echo "$PROG: error: $what failed:" >&2
    sed 's/^/  /' "$WORK/out.log" >&2
    exit 1
  fi
}

# Writes a new P-256 private key to $1, readable only by its owner. The key
# is made under umask 077 and moved into place, so it is never visible with
# looser permissions and an interrupted run leaves no half-written key.
new_key() {
  local dest=$1 tmp="$WORK/key.pem"
  (umask 077 && run "generating a P-256 key for $dest" \
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt ec_param_enc:named_curve -out "$tmp")
  chmod 600 "$tmp"
  mv -f "$tmp" "$dest"
  created "$dest"
}

pubkey_of_cert() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }
pubkey_of_key() { openssl pkey -in "$1" -pubout 2>/dev/null; }
subject_of() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 2>/dev/null | sed 's/^subject=//'; }

# ---- the CA ---------------------------------------------------------------

if [ -e "$CA_KEY" ] && [ -e "$CA_CRT" ]; then
  [ "$(pubkey_of_cert "$CA_CRT")" = "$(pubkey_of_key "$CA_KEY")" ] ||
    die "$CA_KEY does not match $CA_CRT; restore the right pair, or use an empty DIR for a new CA"
  if [ -n "$CA_NAME" ]; then
    have=$(subject_of "$CA_CRT")
    [ "$have" = "CN=$CA_NAME" ] ||
      die "$CA_CRT already exists with subject '$have', not 'CN=$CA_NAME'; use another DIR for a different CA"
  fi
  chmod 600 "$CA_KEY"
  if ! openssl x509 -in "$CA_CRT" -noout -ext basicConstraints 2>/dev/null | grep -q 'pathlen:0'; then
    echo "$PROG: warning: $CA_CRT has no path length limit (made before pki.sh set pathlen:0);" \
      "nircd and the agent refuse intermediates anyway; move to a new CA when convenient" >&2
  fi
elif [ -e "$CA_KEY" ] || [ -e "$CA_CRT" ]; then
  die "only one of $CA_KEY and $CA_CRT exists; restore the other, or remove both (and every certificate they issued) to start a new CA"
else
  new_key "$CA_KEY"
  run "creating the CA certificate" \
    openssl req -config "$CNF" -new -x509 -key "$CA_KEY" -sha256 -days "$CA_DAYS" \
    -subj "/CN=${CA_NAME:-$DEFAULT_CA_NAME}" -extensions v3_ca -out "$WORK/ca.crt"
  chmod 644 "$WORK/ca.crt"
  mv -f "$WORK/ca.crt" "$CA_CRT"
  created "$CA_CRT"
fi

# ---- revocations ----------------------------------------------------------

REVOKED=0
for base in "${REVOKE_NAMES[@]}"; do
  crt=$DIR/$base.crt
  key=$DIR/$base.key
  [ -e "$crt" ] ||
    die "$crt does not exist: nothing to revoke (revoked certificates are in $DIR/revoked/)"
  openssl verify -no_check_time -CAfile "$CA_CRT" "$crt" >/dev/null 2>&1 ||
    die "$crt was not issued by $CA_CRT, so this CA cannot revoke it"
  serial=$(openssl x509 -in "$crt" -noout -serial) || die "cannot read the serial of $crt"
  serial=${serial#serial=}
  run "revoking $crt" openssl ca -config "$CNF" -batch -revoke "$crt"
  # Out of the way, so the next run may issue NAME afresh and nobody
  # configures the revoked pair by mistake.
  [ -d "$DIR/revoked" ] || mkdir -m 700 -- "$DIR/revoked"
  mv -f -- "$crt" "$DIR/revoked/$base-$serial.crt"
  [ ! -e "$key" ] || mv -f -- "$key" "$DIR/revoked/$base-$serial.key"
  echo "revoked $crt (serial $serial); moved to $DIR/revoked/$base-$serial.crt"
  REVOKED=$((REVOKED + 1))
done

# ---- leaves ---------------------------------------------------------------

if [ "$EXPIRED" -eq 1 ]; then
  now=$(date -u +%s)
  # Valid for a month, ending yesterday: unambiguously expired, and not
  # "not yet valid", which a verifier reports differently.
  DATES=(-startdate "$(date -u -d "@$((now - 31 * 86400))" +%y%m%d%H%M%SZ)"
    -enddate "$(date -u -d "@$((now - 86400))" +%y%m%d%H%M%SZ)")
else
  DATES=(-days "$LEAF_DAYS")
fi

# issue BASENAME SUBJECT RFC2253_SUBJECT EKU SAN
# Issues DIR/BASENAME.{key,crt}, or keeps them if they exist and are right.
issue() {
  local base=$1 subj=$2 want_subject=$3 eku=$4 san=$5
  local key="$DIR/$base.key" crt="$DIR/$base.crt"

  if [ -e "$crt" ]; then
    [ -e "$key" ] || die "$crt exists without $key; delete $crt to reissue it"
    openssl verify -no_check_time -CAfile "$CA_CRT" "$crt" >/dev/null 2>&1 ||
      die "$crt was not issued by $CA_CRT; delete $crt and $key to reissue it"
    [ "$(pubkey_of_cert "$crt")" = "$(pubkey_of_key "$key")" ] ||
      die "$key does not match $crt; delete both to reissue them"
    local have
    have=$(subject_of "$crt")
    [ "$have" = "$want_subject" ] ||
      die "$crt has subject '$have', not '$want_subject'; delete $crt and $key to reissue it"
    chmod 600 "$key"
    KEPT=$((KEPT + 1))
    return
  fi

  if [ -e "$key" ]; then
    # A key without its certificate is what an interrupted run leaves
    # behind; certify it rather than replace it.
    openssl pkey -in "$key" -noout 2>/dev/null ||
      die "$key is not a readable private key; delete it to make a new one"
    chmod 600 "$key"
  else
    new_key "$key"
  fi

  cat >"$WORK/ext.cnf" <<EOF
[ leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  run "creating the request for $crt" \
    openssl req -config "$CNF" -new -key "$key" -sha256 -subj "$subj" -out "$WORK/req.csr"
  run "signing $crt" \
    openssl ca -config "$CNF" -batch -notext -in "$WORK/req.csr" -out "$WORK/leaf.crt" \
    "${DATES[@]}" -extfile "$WORK/ext.cnf" -extensions leaf
  chmod 644 "$WORK/leaf.crt"
  mv -f "$WORK/leaf.crt" "$crt"
  created "$crt"
}

for name in "${CONTROLLERS[@]}"; do
  san="DNS:localhost, IP:127.0.0.1, IP:::1, URI:nirc:controller:$name"
  for extra in "${CONTROLLER_SANS[@]}"; do san+=", $extra"; done
  # The controller only accepts connections: a server certificate, which
  # nircd refuses when it is presented by a client.
  issue "controller-$name" "/CN=controller:$name" "CN=controller:$name" \
    "serverAuth" "$san"
done

for slug in "${SITES[@]}"; do
  issue "site-$slug" "/CN=site:$slug" "CN=site:$slug" "clientAuth" "URI:nirc:site:$slug"
done

for i in "${!OP_NAMES[@]}"; do
  name=${OP_NAMES[$i]}
  role=${OP_ROLES[$i]}
  issue "operator-$name" "/OU=$role/CN=operator:$name" "CN=operator:$name,OU=$role" \
    "clientAuth" "URI:nirc:operator:$name"
done

# ---- the revocation list ----------------------------------------------------

# Rewritten every run: a fresh next-update date, and every revocation so far.
run "writing the CRL" openssl ca -config "$CNF" -batch -gencrl -out "$WORK/crl.pem"
chmod 644 "$WORK/crl.pem"
new_crl=1
[ ! -e "$CRL" ] || new_crl=0
mv -f "$WORK/crl.pem" "$CRL"
if [ "$new_crl" -eq 1 ] || [ "$REVOKED" -gt 0 ]; then
  created "$CRL"
fi

if [ "$KEPT" -gt 0 ]; then
  echo "$PROG: kept $KEPT existing certificate(s) in $DIR" >&2
fi
if [ "$EXPIRED" -eq 1 ] && [ "$KEPT" -gt 0 ]; then
  echo "$PROG: warning: --expired applies only to new certificates; the $KEPT kept ones are unchanged" >&2
fi
