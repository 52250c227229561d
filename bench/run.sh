#!/usr/bin/env bash
# bench/run.sh [-quick]: Postie against Postfix + Dovecot, on this machine, in
# one run, as ratios. See bench/README.md for what each figure measures.
#
# Needs root (it installs Debian's postfix and dovecot when missing and runs
# them as private instances under a temporary directory). Every server it
# starts listens on 127.0.0.1 high ports only and is stopped on exit or
# interrupt. Environment: KEEP=1 keeps the temporary directory (logs, data);
# BENCH_TMPDIR sets where it is made (default: $TMPDIR or /tmp);
# BENCH_IDLE_LATE=130s also prints the idle memory that much later (after
# Go's periodic GC), which the table does not show.
set -euo pipefail

QUICK=0
case "${1:-}" in
  -quick | --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: bench/run.sh [-quick]" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
BEGAN=$(date +%s)
if ((QUICK)); then
  SMTP_N=300; MBOX_N=1000; IDLE_N=200; CLIENTS=5; FSYNC_DUR=1s; REPS=2
else
  SMTP_N=5000; MBOX_N=10000; IDLE_N=1000; CLIENTS=20; FSYNC_DUR=2s; REPS=3
fi
SMTP_SIZES="4096 65536"
SMTP_SESSIONS="1 10 50"
USERS=20
DOMAIN=bench.test
PASS=bench-password-1
WORD=quetzalcoatl
MAIL_UID=65534 # nobody: owner of the Postfix/Dovecot Maildirs
MAIL_GID=65534

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root: it installs packages and runs Postfix"
command -v go >/dev/null || die "go is not installed"

# --- 1. Debian packages --------------------------------------------------------

install_packages() {
  local missing=()
  for pkg in postfix dovecot-imapd dovecot-pop3d; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  # Keep apt from starting the system instances on ports 25/110/143: only our
  # private instances are to run. The policy file is ours only if we made it.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$TMP/apt.log" 2>&1 || rc=$?
  ((made_policy)) && rm -f "$policy"
  ((rc == 0)) || { tail -20 "$TMP/apt.log" >&2; die "apt-get install failed"; }
}

# --- Cleanup: stop only what this script started ------------------------------

TMP=""
POSTIE_PID=""
PF_STARTED=0
DV_STARTED=0
DOVECOT_PID=""
LG_PID="" # the load generator running now

stop_pid() { # pid: TERM, wait up to 10 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

stop_postie() {
  [[ -n $POSTIE_PID ]] || return 0
  stop_pid "$POSTIE_PID"
  wait "$POSTIE_PID" 2>/dev/null || true
  POSTIE_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $LG_PID ]] && stop_pid "$LG_PID"
  stop_postie
  if ((PF_STARTED)); then
    local master_pid
    master_pid=$(tr -d ' ' <"$PF/queue/pid/master.pid" 2>/dev/null || true)
    postfix -c "$PF/etc" stop >/dev/null 2>&1 || true
    [[ -n $master_pid ]] && stop_pid "$master_pid"
  fi
  if ((DV_STARTED)); then
    [[ -n $DOVECOT_PID ]] || DOVECOT_PID=$(cat "$DV/run/master.pid" 2>/dev/null || true)
    [[ -n $DOVECOT_PID ]] && stop_pid "$DOVECOT_PID"
  fi
  if [[ -n $TMP && -d $TMP ]]; then
    if [[ ${KEEP:-0} == 1 ]]; then
      log "kept $TMP"
    elif ((rc != 0)); then
      # Keep the logs and configurations for a look; drop the bulky mail.
      rm -rf "$MAILBASE" "$PO/data/mail" "$PF/queue" "$TMP/loadgen" "$PO/postie"
      log "kept the logs in $TMP (postfix/maillog, dovecot/dovecot.log, postie/postie.log)"
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/postie-bench.XXXXXX")
chmod 755 "$TMP" # the mail uid must reach the Maildirs below it
PF=$TMP/postfix
DV=$TMP/dovecot
PO=$TMP/postie
MAILBASE=$TMP/mail # Postfix's virtual_mailbox_base, Dovecot's mail root
RESULTS=$TMP/results.tsv
mkdir -p "$PF/etc" "$PF/queue" "$PF/data" "$DV/run" "$DV/state" "$PO/data" "$MAILBASE/$DOMAIN"
chown -R "$MAIL_UID:$MAIL_GID" "$MAILBASE"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

install_packages
chown postfix "$PF/data"

# --- 2. Build ------------------------------------------------------------------

LG=$TMP/loadgen
# lg ARGS...: run the load generator in the background and wait for it, so a
# signal reaches our trap at once (bash defers traps while a foreground child
# runs) and the trap can stop it.
lg() {
  local rc=0
  "$LG" "$@" &
  LG_PID=$!
  wait "$LG_PID" || rc=$?
  LG_PID=""
  return "$rc"
}
log "building the load generator"
(cd "$REPO" && go build -o "$LG" ./bench/loadgen) || die "bench/loadgen does not build"
HAVE_POSTIE=1
if ! (cd "$REPO" && go build -o "$PO/postie" ./cmd/postie) >"$TMP/postie-build.log" 2>&1; then
  HAVE_POSTIE=0
  log "cmd/postie does not build: measuring the reference only (see below)"
  head -5 "$TMP/postie-build.log" >&2
fi

mapfile -t P < <("$LG" ports -n 8)
PF_SMTP=${P[0]} DV_IMAP=${P[1]} DV_POP3=${P[2]} PO_SMTP=${P[3]} PO_IMAP=${P[4]} PO_POP3=${P[5]}
DV_IMAPS=${P[6]} PO_IMAPS=${P[7]} # implicit TLS, for the idle memory over TLS

wait_port() { # port what: wait up to 20 s for a listener
  local i
  for ((i = 0; i < 200; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$2 is not listening on 127.0.0.1:$1"
  return 1
}

# --- 3. Context: the disk's raw fsync rate (before any server runs) ------------

log "fsync rate of the disk under $TMP"
for w in 1 16; do
  lg fsync -server host -out "$RESULTS" -dir "$TMP" -writers "$w" -duration "$FSYNC_DUR"
done

# --- 4. The IMAP/POP3 mailbox, written into both stores before they start -----

log "generating the $MBOX_N-message mailbox into both Maildirs"
lg mailgen -n "$MBOX_N" -seed 1 -word "$WORD" -to "reader@$DOMAIN" -uid "$MAIL_UID" -gid "$MAIL_GID" \
  "$PO/data/mail/$DOMAIN/reader" "$MAILBASE/$DOMAIN/reader"
chown "$MAIL_UID:$MAIL_GID" "$MAILBASE/$DOMAIN/reader"

USER_LIST=(reader)
for ((u = 1; u <= USERS; u++)); do USER_LIST+=("$(printf 'u%02d' "$u")"); done

# --- 5. Postfix: a private instance, virtual delivery into Maildir ------------

configure_postfix() {
  : >"$PF/etc/vmailbox"
  for u in "${USER_LIST[@]}"; do echo "$u@$DOMAIN $DOMAIN/$u/" >>"$PF/etc/vmailbox"; done
  cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench-postfix.test
mydomain = bench-postfix.test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
relay_domains =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
readme_directory = no
smtputf8_enable = no
maillog_file_prefixes = $TMP
maillog_file = $PF/maillog
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$PF/etc/vmailbox
virtual_mailbox_base = $MAILBASE
virtual_uid_maps = static:$MAIL_UID
virtual_gid_maps = static:$MAIL_GID
EOF
  # Debian's services minus the pipe ones, none chrooted (no chroot set-up),
  # smtpd on our loopback port only.
  cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$PF_SMTP inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

start_postfix() {
  log "starting Postfix on 127.0.0.1:$PF_SMTP"
  postfix -c "$PF/etc" check >"$PF/check.log" 2>&1 || { cat "$PF/check.log" >&2; die "postfix check failed"; }
  PF_STARTED=1
  postfix -c "$PF/etc" start >"$PF/start.log" 2>&1 || { cat "$PF/start.log" >&2; die "postfix start failed"; }
  wait_port "$PF_SMTP" Postfix || die "Postfix did not start (see $PF/maillog)"
}

# --- 6. Dovecot: a private instance over the same Maildirs --------------------

configure_dovecot() {
  local hash
  # A self-signed certificate for IMAPS (the idle memory over TLS); Postie makes its own.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$DV/key.pem" -out "$DV/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"
  hash=$("$LG" pwhash -password "$PASS")
  : >"$DV/passwd"
  for u in "${USER_LIST[@]}"; do
    echo "$u@$DOMAIN:$hash:$MAIL_UID:$MAIL_GID::$MAILBASE/$DOMAIN/$u::" >>"$DV/passwd"
  done
  cat >"$DV/dovecot.conf" <<EOF
base_dir = $DV/run
state_dir = $DV/state
instance_name = postie-bench
log_path = $DV/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <$DV/cert.pem
ssl_key = <$DV/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:$MAILBASE/%d/%n
passdb {
  driver = passwd-file
  args = username_format=%u $DV/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $DV/passwd
}
default_process_limit = 2500
default_client_limit = 10000
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DV_IMAP
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $DV_IMAPS
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DV_POP3
  }
  inet_listener pop3s {
    port = 0
  }
}
protocol imap {
  mail_max_userip_connections = 5000
}
protocol pop3 {
  mail_max_userip_connections = 100
}
EOF
}

start_dovecot() {
  log "starting Dovecot on 127.0.0.1:$DV_IMAP (IMAP) and :$DV_POP3 (POP3)"
  DV_STARTED=1
  dovecot -c "$DV/dovecot.conf" || die "dovecot failed to start (see $DV/dovecot.log)"
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $DV/run/master.pid ]] && break
    sleep 0.1
  done
  DOVECOT_PID=$(cat "$DV/run/master.pid")
  wait_port "$DV_IMAP" "Dovecot IMAP" && wait_port "$DV_POP3" "Dovecot POP3" ||
    die "Dovecot did not start (see $DV/dovecot.log)"
}

# --- 7. Postie -------------------------------------------------------------------

configure_postie() {
  cat >"$PO/postie.toml" <<EOF
hostname = "bench-postie.test"
domains = ["$DOMAIN"]
data_dir = "$PO/data"

[log]
level = "warn"

[smtp]
listen = ["127.0.0.1:$PO_SMTP"]
max_connections = 2000
max_connections_per_ip = 2000
messages_per_minute_per_ip = 0

[submission]
listen = []
tls_listen = []

[imap]
listen = ["127.0.0.1:$PO_IMAP"]
tls_listen = ["127.0.0.1:$PO_IMAPS"]
max_connections = 5000
max_connections_per_ip = 5000

[pop3]
listen = ["127.0.0.1:$PO_POP3"]
tls_listen = []
max_connections = 100
max_connections_per_ip = 100
EOF
  for u in "${USER_LIST[@]}"; do
    echo "$PASS" | "$PO/postie" user add "$u@$DOMAIN" -config "$PO/postie.toml" >/dev/null
  done
}

start_postie() {
  log "starting Postie on 127.0.0.1:$PO_SMTP (SMTP), :$PO_IMAP (IMAP), :$PO_POP3 (POP3)"
  "$PO/postie" serve -config "$PO/postie.toml" >>"$PO/postie.log" 2>&1 &
  POSTIE_PID=$!
  wait_port "$PO_SMTP" "Postie SMTP" && wait_port "$PO_IMAP" "Postie IMAP" && wait_port "$PO_POP3" "Postie POP3"
}

configure_postfix
configure_dovecot
start_postfix
start_dovecot
postie_failed() {
  log "Postie failed to start: measuring the reference only"
  tail -5 "$PO/postie.log" >&2 || true
  stop_postie
  HAVE_POSTIE=0
}
if ((HAVE_POSTIE)); then
  configure_postie && start_postie || postie_failed
fi

# postie_run CMD...: run a Postie measurement, but let a failure cost only its
# figures, not the run (Postie is young; the table shows what is missing).
postie_run() {
  ((HAVE_POSTIE)) || return 0
  "$@" || log "Postie: loadgen $2 failed (exit $?); its figures are missing"
}
ref_run() { "$@" || die "reference: loadgen $2 failed"; }

# --- 8. The loads ------------------------------------------------------------------

for size in $SMTP_SIZES; do
  for c in $SMTP_SESSIONS; do
    log "SMTP: $SMTP_N messages of $size bytes over $c session(s)"
    ref_run lg smtp -server ref -out "$RESULTS" -addr "127.0.0.1:$PF_SMTP" -n "$SMTP_N" -c "$c" \
      -size "$size" -users "$USERS" -maildirs "$MAILBASE/$DOMAIN"
    postie_run lg smtp -server postie -out "$RESULTS" -addr "127.0.0.1:$PO_SMTP" -n "$SMTP_N" -c "$c" \
      -size "$size" -users "$USERS" -maildirs "$PO/data/mail/$DOMAIN"
  done
done

# IMAP and POP3: the figures a server gives only once (the first SELECT and
# the first header sync) are taken once each; every other one is taken
# $REPS times, alternating the servers round by round (reference, Postie,
# reference, Postie, ...) so that drift in the page cache and in the load
# of the machine falls on both alike. The table shows the medians.
imap_load() { # phase server port
  local run=ref_run
  [[ $2 == postie ]] && run=postie_run
  $run lg imap -server "$2" -phase "$1" -out "$RESULTS" -addr "127.0.0.1:$3" -user "reader@$DOMAIN" \
    -pass "$PASS" -expect "$MBOX_N" -word "$WORD" -clients "$CLIENTS"
}
pop3_load() { # server port
  local run=ref_run
  [[ $1 == postie ]] && run=postie_run
  $run lg pop3 -server "$1" -out "$RESULTS" -addr "127.0.0.1:$2" -user "reader@$DOMAIN" -pass "$PASS" \
    -expect "$MBOX_N"
}

log "IMAP: $MBOX_N-message mailbox, first SELECT and header sync"
imap_load first ref "$DV_IMAP"
imap_load first postie "$PO_IMAP"
for ((r = 1; r <= REPS; r++)); do
  log "IMAP: $MBOX_N-message mailbox, round $r of $REPS"
  imap_load repeat ref "$DV_IMAP"
  imap_load repeat postie "$PO_IMAP"
done

for ((r = 1; r <= REPS; r++)); do
  log "POP3: $MBOX_N-message mailbox, round $r of $REPS"
  pop3_load ref "$DV_POP3"
  pop3_load postie "$PO_POP3"
done

# idle_mem PLAIN_OR_TLS: the idle memory of both servers, over plaintext or
# implicit TLS. Over TLS Dovecot's imap-login processes hold the TLS sessions
# (one process a connection by default) and proxy to imap: both are counted.
idle_mem() {
  local tls=() dv_addr=$DV_IMAP po_addr=$PO_IMAP comm=imap
  if [[ $1 == tls ]]; then
    tls=(-tls) dv_addr=$DV_IMAPS po_addr=$PO_IMAPS comm=imap,imap-login
  fi
  log "memory: $IDLE_N idle IMAP connections ($1)"
  ref_run lg idle -server ref -out "$RESULTS" -addr "127.0.0.1:$dv_addr" -conns "$IDLE_N" -users "$USERS" \
    -pass "$PASS" -children-of "$DOVECOT_PID" -comm "$comm" -late "${BENCH_IDLE_LATE:-0}" "${tls[@]}"
  if ((HAVE_POSTIE)); then
    # A fresh process, so "before" is Postie at rest, not the heap the earlier
    # loads left behind.
    stop_postie
    start_postie || postie_failed
    postie_run lg idle -server postie -out "$RESULTS" -addr "127.0.0.1:$po_addr" -conns "$IDLE_N" -users "$USERS" \
      -pass "$PASS" -pid "$POSTIE_PID" -late "${BENCH_IDLE_LATE:-0}" "${tls[@]}"
  fi
}
idle_mem plain
idle_mem tls

# --- 9. The table ----------------------------------------------------------------

{
  echo "Postie vs Postfix + Dovecot, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, mode: $( ((QUICK)) && echo quick || echo full)"
  echo "Postfix $(postconf -c "$PF/etc" -h mail_version 2>/dev/null), Dovecot $(dovecot --version | cut -d' ' -f1)$( ((HAVE_POSTIE)) || echo ', Postie: did not build or start')"
  echo
  "$LG" table -in "$RESULTS"
} | tee "$TMP/table.txt"
cp "$TMP/table.txt" "$REPO/bench/last-run.txt" 2>/dev/null || true
log "done in $(($(date +%s) - BEGAN)) s"
