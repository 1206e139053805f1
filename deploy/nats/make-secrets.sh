#!/bin/sh
# make-secrets.sh DIR HOST:PORT...  writes, with new random passwords:
#   DIR/secrets.conf        the route password and the route URLs
#                           (included by cluster.conf);
#   DIR/passwords.conf      a password per broker user (included by
#                           users.conf);
#   DIR/nats-USER.password  each user's password, for the nats.password_file
#                           of the service that signs in as USER
#                           (extractor, loader, dnsctl, auth, operator,
#                           cutover, delta);
#   DIR/source-credential.key  the key (32 random bytes, 64 hex digits)
#                           that seals the source passwords users hand
#                           over at sign-in: auth.source_credentials.key_file
#                           of the auth service and source.credential_key_file
#                           of the extractor (and of the operator's verify,
#                           cutover plan); copy it to those machines only.
# Every file is mode 0600. The HOST:PORTs are the nodes' cluster addresses
# (for the deployment in this directory: nats1.internal:6222
# nats2.internal:6222 nats3.internal:6222). Copy the same secrets.conf to
# every node, with passwords.conf (chown them to the server's user), and
# each password file to the
# machines whose service uses it. Existing files are not overwritten.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIR HOST:PORT..." >&2; exit 2; }
dir=$1; shift
users="extractor loader dnsctl auth operator cutover delta"
for f in secrets.conf passwords.conf source-credential.key $(for u in $users; do echo "nats-$u.password"; done); do
	[ ! -e "$dir/$f" ] || { echo "$dir/$f exists: not overwritten" >&2; exit 1; }
done
# A letter first: nats-server's parser reads an unquoted value that
# starts with a digit as a number.
pw() { printf 'p%s' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; }
umask 077
route=$(pw)
{
	echo "# Made by make-secrets.sh: the broker users' passwords. Mode 0600, never committed."
	for u in $users; do
		p=$(pw)
		echo "$p" >"$dir/nats-$u.password"
		echo "$(echo "$u" | tr a-z A-Z)_PASSWORD: \"$p\""
	done
} >"$dir/passwords.conf"
{
	echo "# Made by make-secrets.sh: the cluster's route secrets. Mode 0600, never committed."
	echo "ROUTE_PASSWORD: \"$route\""
	echo "ROUTES: ["
	for hp in "$@"; do echo "  \"nats-route://route:$route@$hp\""; done
	echo "]"
} >"$dir/secrets.conf"
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/source-credential.key"
echo >>"$dir/source-credential.key"
