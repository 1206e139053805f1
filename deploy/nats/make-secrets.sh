#!/bin/sh
# make-secrets.sh DIR HOST:PORT...  writes DIR/secrets.conf (the cluster's
# passwords and route URLs, included by cluster.conf) and
# DIR/services.password (the services' nats.password_file), both mode
# 0600, with new random passwords. The HOST:PORTs are the nodes' cluster
# addresses (for the deployment in this directory:
# nats1.internal:6222 nats2.internal:6222 nats3.internal:6222). Copy the
# same secrets.conf to every node; chown it to the server's user.
# Existing files are not overwritten.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIR HOST:PORT..." >&2; exit 2; }
dir=$1; shift
for f in "$dir/secrets.conf" "$dir/services.password"; do
	[ ! -e "$f" ] || { echo "$f exists: not overwritten" >&2; exit 1; }
done
# A letter first: nats-server's parser reads an unquoted value that
# starts with a digit as a number.
pw() { printf 'p%s' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; }
services=$(pw)
route=$(pw)
umask 077
{
	echo "# Made by make-secrets.sh: the cluster's secrets. Mode 0600, never committed."
	echo "SERVICES_PASSWORD: \"$services\""
	echo "ROUTE_PASSWORD: \"$route\""
	echo "ROUTES: ["
	for hp in "$@"; do echo "  \"nats-route://route:$route@$hp\""; done
	echo "]"
} >"$dir/secrets.conf"
echo "$services" >"$dir/services.password"
