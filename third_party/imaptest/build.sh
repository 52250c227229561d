#!/bin/sh
# build.sh [DEST]
#
# Builds Dovecot's imaptest (the standard IMAP compliance and stress tester)
# from imaptest-src.tar.gz beside this file, against Debian 12's Dovecot 2.3
# development files, into DEST (default: $TMPDIR/imaptest or /tmp/imaptest; shared/ is read-only):
#   DEST/bin/imaptest   the binary
#   DEST/tests/         its compliance scripts
# About a minute on 2 cores. Needs (Debian packages):
#   apt-get install -y dovecot-dev dovecot-core build-essential autoconf automake libtool pkg-config
# (dovecot-core for libdovecot.so, which imaptest links against; its service
# need not run.)
#
# The archive is upstream commit 924f619 (2022-03-09, the last one that builds
# against Dovecot 2.3) plus four later upstream fixes to the script runner
# (9ea2bdd, 6f99cd0, 1425ad0, 2fce72e) and one local line that counts a
# skipped not-authenticated test as skipped. MIT licensed (COPYING.MIT inside).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${1:-${TMPDIR:-/tmp}/imaptest}
DOVECOT_LIB=${DOVECOT_LIB:-/usr/lib/dovecot}
for f in "$DOVECOT_LIB/dovecot-config" /usr/include/dovecot/imap-parser.h; do
	[ -e "$f" ] || { echo "build.sh: $f missing: apt-get install -y dovecot-dev" >&2; exit 1; }
done
[ -e "$DOVECOT_LIB/libdovecot.so" ] || { echo "build.sh: $DOVECOT_LIB/libdovecot.so missing: apt-get install -y dovecot-core" >&2; exit 1; }
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imaptest-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
tar -xzf "$HERE/imaptest-src.tar.gz" -C "$WORK"
cd "$WORK/imaptest"
# Debian's security updates of dovecot-dev gave imap_parser_create() a 4th argument.
if grep -A3 '^imap_parser_create(' /usr/include/dovecot/imap-parser.h | grep -q 'imap_parser_params'; then
	sed -i 's/imap_parser_create(\(.*\), (size_t)-1);/imap_parser_create(\1, (size_t)-1, NULL);/' \
		src/commands.c src/imap-client.c src/test-parser.c
fi
echo "0.0.0+924f619-fixes" > version
autoreconf -i >"$WORK/autoreconf.log" 2>&1 || { cat "$WORK/autoreconf.log"; exit 1; }
./configure --with-dovecot="$DOVECOT_LIB" LDFLAGS="-Wl,-rpath,$DOVECOT_LIB" \
	>"$WORK/configure.log" 2>&1 || { tail -30 "$WORK/configure.log"; exit 1; }
make -j"$(nproc)" >"$WORK/make.log" 2>&1 || { grep -E 'error|Error' "$WORK/make.log" | head -30; exit 1; }
mkdir -p "$DEST/bin"
cp src/imaptest "$DEST/bin/imaptest"
rm -rf "$DEST/tests"
cp -r src/tests "$DEST/tests"
echo "built $DEST/bin/imaptest; compliance scripts in $DEST/tests"
