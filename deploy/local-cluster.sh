#!/usr/bin/env bash
# local-cluster.sh [start|stop|status]: the whole deployment of this
# directory on one machine, on loopback ports: the three JetStream nodes
# of nats/ (node1.conf .. node3.conf, cluster.conf, users.conf, secrets
# from make-secrets.sh) and every daemon of systemd/ (extractor, loader,
# dnsctl, auth, cutover run, delta, dashboard) with its example file, each
# signed in as its own broker user. Nothing is installed and nothing runs
# as root: everything lives in one working directory.
#
#   start   build mailferry (unless MAILFERRY_BIN names one), make the
#           working directory, the secrets and the files, start the nodes,
#           wait until they are healthy, start the daemons and wait until
#           each one is connected to the broker (its /readyz is 200, or
#           503 naming only the servers below). Already running: says so.
#   stop    SIGTERM to the daemons, then to the nodes, each by the PID in
#           its file; SIGKILL after MAILFERRY_LOCAL_GRACE seconds (30).
#   status  what runs, its address and its log.
#
# Environment:
#   MAILFERRY_LOCAL_DIR        working directory (default var/local-cluster
#                              at the top of the repository)
#   MAILFERRY_LOCAL_BASE_PORT  first of the loopback ports it uses (up to
#                              base+53)
#                              (default 24200; the table is in ports below)
#   MAILFERRY_BIN              the mailferry binary (default: built from
#                              this repository into DIR/bin, or `mailferry`
#                              from PATH when go is not installed)
#   MAILFERRY_LOCAL_GRACE      seconds stop waits before SIGKILL (30)
#   MAILFERRY_LOCAL_TIMEOUT    seconds start waits for readiness (90)
#
# The working directory holds:
#   nats/secrets/   what make-secrets.sh made (mode 0600)
#   nats/nodeN/     each node's files as in deploy/nats, its addresses
#                   and store rewritten, and its store (nats/nodeN/store)
#   etc/            the daemons' files (deploy/*.yaml with addresses, ports
#                   and paths rewritten), the metrics and dashboard
#                   passwords, placeholders for the IMAP master passwords,
#                   a TSIG key, the domains and the Dovecot passwd-file
#   log/NAME.log, run/NAME.pid, reports/
# The servers mailferry talks to (the legacy IMAP server, the target, the
# DNS primary) do not run here: the files point them at loopback ports
# nothing listens on. Point source.address, target.address, dns.server,
# dns.verify_servers and auth.legacy_imap.address (etc/*.yaml) at your
# servers, and put the real master passwords in etc/source-master.pw and
# etc/target-master.pw, before migrating anything. The daemons start
# without them; dnsctl's and auth's /readyz say 503 until their DNS
# primary and legacy IMAP server answer (the extractor and the loader
# dial theirs only once they have work).
#
# No secret is printed: passwords are read from their files by the
# processes themselves (and by this script's readiness probe, which sends
# them over loopback only).
set -euo pipefail
umask 077

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
dir=$(realpath -m -- "${MAILFERRY_LOCAL_DIR:-$repo/var/local-cluster}")
base=${MAILFERRY_LOCAL_BASE_PORT:-24200}
grace=${MAILFERRY_LOCAL_GRACE:-30}
timeout=${MAILFERRY_LOCAL_TIMEOUT:-90}
for v in "$base" "$grace" "$timeout"; do
	case $v in '' | *[!0-9]*)
		echo "local-cluster: MAILFERRY_LOCAL_BASE_PORT, _GRACE and _TIMEOUT are numbers" >&2
		exit 2
		;;
	esac
done
[ "$base" -ge 1024 ] && [ "$base" -le 65475 ] || {
	echo "local-cluster: MAILFERRY_LOCAL_BASE_PORT must be 1024..65475" >&2
	exit 2
}

# The ports, from base: node N's client, route and monitoring ports, each
# daemon's metrics port, the auth page, the dashboard, and the addresses
# the absent peers are pointed at.
client() { echo $((base + $1 - 1)); }  # 1..3
route() { echo $((base + 10 + $1 - 1)); }
monitor() { echo $((base + 20 + $1 - 1)); }
declare -A metricsport=(
	[extractor]=$((base + 30)) [loader]=$((base + 31)) [dnsctl]=$((base + 32))
	[auth]=$((base + 33)) [delta]=$((base + 34)) [cutover]=$((base + 35))
)
dashport=$((base + 36))
authport=$((base + 37))
legacyport=$((base + 50)) # the legacy IMAP server (source, auth.legacy_imap)
targetport=$((base + 51)) # the new provider's IMAP server
dnsport=$((base + 52))    # the DNS primary; base+53 the secondary

nodes="nats1 nats2 nats3"
# The daemons in the order they start (stop goes the other way); each is
# run as its unit in deploy/systemd runs it.
daemons="extractor loader dnsctl auth cutover delta dashboard"

say() { printf 'local-cluster: %s\n' "$*"; }
die() {
	printf 'local-cluster: %s\n' "$*" >&2
	exit 1
}

# pidof_ NAME: the PID in NAME's file if that process runs and is ours
# (its command line names the working directory: a reused PID is not).
pidof_() {
	local f=$dir/run/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/" || return 1
	echo "$pid"
}

# httpcode PORT PATH [USER PASSWORD_FILE]: the status code of GET PATH on
# 127.0.0.1:PORT (bash's /dev/tcp: no curl needed), 000 when nothing
# answers. The password goes to the child through its environment only.
httpcode() {
	local auth=""
	if [ $# -ge 4 ]; then
		auth=$(printf '%s:%s' "$3" "$(cat "$4")" | base64 -w0)
	fi
	HC_PORT=$1 HC_PATH=$2 HC_AUTH=$auth timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$HC_PORT" || exit 1
		{
			printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n" "$HC_PATH"
			[ -z "$HC_AUTH" ] || printf "Authorization: Basic %s\r\n" "$HC_AUTH"
			printf "\r\n"
		} >&3
		read -r _ code _ <&3 && echo "$code"' 2>/dev/null || echo 000
}

# readybody PORT USER PASSWORD_FILE: GET /readyz behind basic auth; prints
# the status code, then the body (the reasons when not ready).
readybody() {
	local auth raw
	auth=$(printf '%s:%s' "$2" "$(cat "$3")" | base64 -w0)
	raw=$(HC_PORT=$1 HC_AUTH=$auth timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$HC_PORT" || exit 1
		printf "GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n\r\n" "$HC_AUTH" >&3
		cat <&3' 2>/dev/null) || { echo 000; return; }
	# "HTTP/1.0 503 Service Unavailable" CRLF headers CRLF CRLF body
	local status=${raw%%$'\r'*}
	status=${status#* }
	echo "${status%% *}"
	case $raw in
	*$'\r\n\r\n'*) printf '%s\n' "${raw#*$'\r\n\r\n'}" ;;
	esac
}

# replace FILE OLD NEW: NEW for every OLD in FILE; OLD must be there.
replace() {
	local text
	text=$(cat "$1")
	case $text in
	*"$2"*) ;;
	*) die "$1: no \"$2\" to rewrite (deploy/ changed? update local-cluster.sh)" ;;
	esac
	printf '%s\n' "${text//"$2"/"$3"}" >"$1"
}

# secret FILE: a new random password in FILE unless it exists.
secret() {
	[ -e "$1" ] || printf 'p%s\n' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" >"$1"
}

binary() {
	if [ -n "${MAILFERRY_BIN:-}" ]; then
		mf=$MAILFERRY_BIN
	elif command -v go >/dev/null 2>&1 && [ -f "$repo/go.work" ]; then
		say "building mailferry into $dir/bin"
		mkdir -p "$dir/bin"
		(cd "$repo" && go build -o "$dir/bin/mailferry" ./cmd/mailferry)
		mf=$dir/bin/mailferry
	else
		mf=$(command -v mailferry) || die "no mailferry binary: install Go, or set MAILFERRY_BIN"
	fi
	[ -x "$mf" ] || die "$mf is not executable"
}

# makefiles writes every file the processes read; secrets are made once
# and kept, the rest written anew from deploy/ (the ports may differ).
makefiles() {
	mkdir -p "$dir/nats/secrets" "$dir/etc" "$dir/log" "$dir/run" "$dir/reports"
	chmod 0700 "$dir" "$dir/nats/secrets" "$dir/etc"
	if [ ! -e "$dir/nats/secrets/secrets.conf" ]; then
		say "making the broker's secrets (deploy/nats/make-secrets.sh)"
		"$here/nats/make-secrets.sh" "$dir/nats/secrets" \
			"127.0.0.1:$(route 1)" "127.0.0.1:$(route 2)" "127.0.0.1:$(route 3)"
	fi
	# The route URLs in secrets.conf name the route ports: follow a new
	# base port (the Nth URL is node N's).
	local i n f
	awk -v p1="$(route 1)" -v p2="$(route 2)" -v p3="$(route 3)" '
		BEGIN { p[1] = p1; p[2] = p2; p[3] = p3 }
		/nats-route:\/\// { n++; sub(/@127\.0\.0\.1:[0-9]+"/, "@127.0.0.1:" p[n] "\"") }
		{ print }' "$dir/nats/secrets/secrets.conf" >"$dir/nats/secrets/secrets.conf.new"
	mv "$dir/nats/secrets/secrets.conf.new" "$dir/nats/secrets/secrets.conf"
	for i in 1 2 3; do
		n=$dir/nats/node$i
		mkdir -p "$n/store"
		cp "$here/nats/node$i.conf" "$n/node.conf"
		cp "$here/nats/users.conf" "$n/users.conf"
		cp "$dir/nats/secrets/secrets.conf" "$dir/nats/secrets/passwords.conf" "$n/"
		f=$n/cluster.conf
		cp "$here/nats/cluster.conf" "$f"
		replace "$f" "listen: 0.0.0.0:4222" "listen: 127.0.0.1:$(client "$i")"
		replace "$f" "listen: 0.0.0.0:6222" "listen: 127.0.0.1:$(route "$i")"
		replace "$f" "http: 127.0.0.1:8222" "http: 127.0.0.1:$(monitor "$i")"
		replace "$f" '"/var/lib/mailferry-nats"' "\"$n/store\""
	done

	local e=$dir/etc
	secret "$e/metrics.password"
	secret "$e/dashboard.password"
	# Placeholders: the real master passwords of the servers go here.
	secret "$e/source-master.pw"
	secret "$e/target-master.pw"
	secret "$e/opensrs.pw"
	[ -e "$e/dnsctl-key.key" ] || printf 'key "dnsctl-key" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n' \
		"$(head -c 32 /dev/urandom | base64 -w0)" >"$e/dnsctl-key.key"
	[ -e "$e/domains.txt" ] || echo "# one domain per line (dns.domains_file)" >"$e/domains.txt"
	[ -e "$e/dovecot-users" ] || : >"$e/dovecot-users"
	[ -e "$e/mailboxes.csv" ] || cp "$here/mailboxes.csv" "$e/mailboxes.csv"
	for u in extractor loader dnsctl auth operator cutover delta; do
		cp "$dir/nats/secrets/nats-$u.password" "$e/nats-$u.password"
	done

	local urls="nats://127.0.0.1:$(client 1),nats://127.0.0.1:$(client 2),nats://127.0.0.1:$(client 3)"
	for f in extractor loader dnsctl auth mailferry; do
		local out=$e/$f.yaml
		{
			echo "# Made by deploy/local-cluster.sh from deploy/$f.yaml: the broker's"
			echo "# addresses, the ports and the paths rewritten for one machine."
			echo "# Point the servers (source, target, dns, auth.legacy_imap) at yours."
			cat "$here/$f.yaml"
		} >"$out"
		replace "$out" "url: nats://nats1.internal:4222,nats://nats2.internal:4222,nats://nats3.internal:4222" "url: $urls"
		# No TLS on loopback: no CA.
		replace "$out" "ca_file: /etc/mailferry/nats-ca.pem" 'ca_file: ""'
		replace "$out" "/etc/mailferry/" "$e/"
		case $f in
		extractor) replace "$out" "address: legacy-mail.internal:993" "address: 127.0.0.1:$legacyport" ;;
		loader) replace "$out" "address: mail.hostedemail.com:993" "address: 127.0.0.1:$targetport" ;;
		dnsctl)
			replace "$out" "127.0.0.1:10053" "127.0.0.1:$dnsport"
			replace "$out" "127.0.0.1:10054" "127.0.0.1:$((dnsport + 1))"
			;;
		auth)
			replace "$out" "listen: 127.0.0.1:8080" "listen: 127.0.0.1:$authport"
			replace "$out" "/etc/dovecot/users" "$e/dovecot-users"
			replace "$out" "address: 127.0.0.1:10143" "address: 127.0.0.1:$legacyport"
			;;
		mailferry)
			replace "$out" "address: legacy-mail.internal:993" "address: 127.0.0.1:$legacyport"
			replace "$out" "address: mail.hostedemail.com:993" "address: 127.0.0.1:$targetport"
			replace "$out" "/var/lib/mailferry/reports" "$dir/reports"
			replace "$out" "listen: 127.0.0.1:9180" "listen: 127.0.0.1:$dashport"
			;;
		esac
		case $f in
		extractor | loader | dnsctl | auth)
			replace "$out" "listen: 127.0.0.1:$((9464 + $(index $f)))" "listen: 127.0.0.1:${metricsport[$f]}"
			;;
		esac
	done
}

# index NAME: the daemon's place in deploy's metrics ports (9464 + index).
index() {
	case $1 in
	extractor) echo 0 ;; loader) echo 1 ;; dnsctl) echo 2 ;; auth) echo 3 ;;
	delta) echo 4 ;; cutover) echo 5 ;;
	esac
}

# unitcommand NAME: fills cmd (argv) and env (VAR=value) from
# deploy/systemd/mailferry-NAME.service's ExecStart and Environment lines,
# rewritten for the working directory: /usr/local/bin/mailferry-SVC is
# `mailferry SVC` (the same service), /etc/mailferry/ the working
# directory's etc/, the metrics ports the local ones.
unitcommand() {
	local unit=$here/systemd/mailferry-$1.service line a v
	[ -f "$unit" ] || die "no unit $unit"
	cmd=()
	env=()
	while IFS= read -r line; do
		case $line in
		ExecStart=*)
			local -a words
			read -r -a words <<<"${line#ExecStart=}"
			for a in "${words[@]}"; do
				case $a in
				/usr/local/bin/mailferry) cmd+=("$mf") ;;
				/usr/local/bin/mailferry-*) cmd+=("$mf" "${a#/usr/local/bin/mailferry-}") ;;
				/etc/mailferry/*) cmd+=("$dir/etc/${a#/etc/mailferry/}") ;;
				*) cmd+=("$a") ;;
				esac
			done
			;;
		Environment=*)
			v=${line#Environment=}
			v=${v//\/etc\/mailferry\//$dir/etc/}
			case $v in
			MAILFERRY_METRICS_LISTEN=*) v="MAILFERRY_METRICS_LISTEN=127.0.0.1:${metricsport[$1]}" ;;
			esac
			env+=("$v")
			;;
		esac
	done <"$unit"
	[ ${#cmd[@]} -gt 0 ] || die "$unit: no ExecStart"
}

# launch NAME CMD...: starts CMD detached (its own session, no terminal),
# output to log/NAME.log, PID to run/NAME.pid.
launch() {
	local name=$1
	shift
	if command -v setsid >/dev/null 2>&1; then
		setsid "$@" </dev/null >>"$dir/log/$name.log" 2>&1 &
	else
		nohup "$@" </dev/null >>"$dir/log/$name.log" 2>&1 &
	fi
	local pid=$! i
	# Until the child has exec'd the command, /proc shows this script's
	# command line, which pidof_ does not take for ours: a readiness check
	# in that moment took the daemon for exited (seen under load in CI).
	for i in $(seq 40); do
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "$pid" >"$dir/run/$name.pid"
}

# waitfor WHAT CHECK...: runs CHECK until it succeeds or timeout seconds
# have passed.
waitfor() {
	local what=$1 deadline=$((SECONDS + timeout))
	shift
	say "waiting for $what"
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.5
	done
}

nodeshealthy() {
	local i
	for i in 1 2 3; do
		[ "$(httpcode "$(monitor $i)" /healthz)" = 200 ] || return 1
	done
}

# readyport NAME: where NAME answers for its readiness.
readyport() {
	case $1 in
	dashboard) echo "$dashport" ;;
	*) echo "${metricsport[$1]}" ;;
	esac
}

# ready NAME: NAME answers, connected to the broker. Its /readyz is 200,
# or 503 naming only servers this machine does not run (dnsctl's DNS
# primary, auth's legacy IMAP server: see the top of this file), never
# the broker.
ready() {
	case $1 in
	dashboard) [ "$(httpcode "$dashport" /state.json ops "$dir/etc/dashboard.password")" = 200 ] ;;
	*)
		local out
		out=$(readybody "${metricsport[$1]}" prometheus "$dir/etc/metrics.password")
		case ${out%%$'\n'*} in
		200) return 0 ;;
		503) case $out in *broker*) return 1 ;; *$'\n'?*) return 0 ;; *) return 1 ;; esac ;;
		*) return 1 ;;
		esac
		;;
	esac
}

# readyor NAME: NAME is ready (0), or has exited (0 too: stop waiting).
readyor() {
	pidof_ "$1" >/dev/null || return 0
	ready "$1"
}

# bringup NAME: starts daemon NAME as its unit runs it and waits until it
# is ready; one that exits while starting is started again after 2 s, as
# its unit's Restart=always would (a daemon gives up when the cluster
# does not answer its first declarations within 5 s).
bringup() {
	local n=$1 i
	unitcommand "$n"
	for i in 1 2 3 4; do
		launch "$n" env "${env[@]}" "${cmd[@]}"
		# readyor ends the wait when the daemon is ready or gone; still
		# running then means it was ready (asking again could catch a
		# loaded machine's slow answer and call it not ready).
		if waitfor "$n's readiness (127.0.0.1:$(readyport "$n"))" readyor "$n"; then
			pidof_ "$n" >/dev/null && return 0
		elif pidof_ "$n" >/dev/null; then
			die "$n is not ready after ${timeout}s: see $dir/log/$n.log (deploy/local-cluster.sh stop to clean up)"
		fi
		[ $i -lt 4 ] || die "$n exited: see $dir/log/$n.log (deploy/local-cluster.sh stop to clean up)"
		say "$n exited while starting: again in 2 s, as its unit would (see $dir/log/$n.log)"
		sleep 2
	done
}

start() {
	local running="" missing="" n i round again
	for n in $nodes $daemons; do
		if pidof_ "$n" >/dev/null; then running="$running $n"; else missing="$missing $n"; fi
	done
	if [ -z "$missing" ]; then
		say "already running:$running (deploy/local-cluster.sh status)"
		return 0
	fi
	binary
	if [ -n "$running" ]; then
		say "already running:$running; starting$missing with the files in $dir"
	else
		makefiles
	fi
	i=0
	for n in $nodes; do
		i=$((i + 1))
		pidof_ "$n" >/dev/null || launch "$n" "$mf" nats -config "$dir/nats/node$i/node.conf"
	done
	waitfor "the three nodes' JetStream (/healthz on 127.0.0.1:$(monitor 1)..$(monitor 3))" nodeshealthy ||
		die "the nodes are not healthy after ${timeout}s: see $dir/log/nats*.log"
	# One at a time, each ready before the next: the first to start
	# declares the shared streams.
	for n in $daemons; do
		pidof_ "$n" >/dev/null || bringup "$n"
	done
	# Ready means connected; a daemon may still give up on a declaration
	# for 5 s after that. Start again any that did.
	for round in 1 2 3; do
		sleep 6
		again=""
		for n in $daemons; do
			pidof_ "$n" >/dev/null || again="$again $n"
		done
		[ -n "$again" ] || break
		for n in $again; do
			say "$n exited after it was ready: again, as its unit would (see $dir/log/$n.log)"
			bringup "$n"
		done
	done
	for n in $daemons; do
		ready "$n" || waitfor "$n's readiness again" ready "$n" || die "$n is not ready: deploy/local-cluster.sh status"
	done
	say "up: $dir (deploy/local-cluster.sh status; the operator's file is $dir/etc/mailferry.yaml)"
}

# stopall NAMES: SIGTERM to each that runs, then wait; SIGKILL after grace.
stopall() {
	local n pid stopping="" deadline=$((SECONDS + grace))
	for n in "$@"; do
		if pid=$(pidof_ "$n"); then
			kill -TERM "$pid" 2>/dev/null || true
			stopping="$stopping $n:$pid"
			stopped=$((stopped + 1))
		fi
	done
	for n in $stopping; do
		pid=${n#*:}
		n=${n%:*}
		while kill -0 "$pid" 2>/dev/null; do
			if [ $SECONDS -ge $deadline ]; then
				say "$n (pid $pid) did not stop within ${grace}s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.2
		done
		say "stopped $n (pid $pid)"
	done
	for n in "$@"; do rm -f "$dir/run/$n.pid"; done
}

stop() {
	local rev="" n stopped=0
	if [ -d "$dir/run" ]; then
		for n in $daemons; do rev="$n $rev"; done
		stopall $rev
		stopall $nodes
	fi
	[ $stopped -gt 0 ] || say "nothing runs ($dir)"
}

status() {
	local n pid i=0 code
	for n in $nodes; do
		i=$((i + 1))
		if pid=$(pidof_ "$n"); then
			code=$(httpcode "$(monitor $i)" /healthz)
			printf '%-10s running  pid %-7s client 127.0.0.1:%s  /healthz %s  log %s\n' "$n" "$pid" "$(client $i)" "$code" "$dir/log/$n.log"
		else
			printf '%-10s stopped\n' "$n"
		fi
	done
	for n in $daemons; do
		if pid=$(pidof_ "$n"); then
			if ready "$n"; then code=ready; else code="not ready"; fi
			printf '%-10s running  pid %-7s 127.0.0.1:%-6s %-10s log %s\n' "$n" "$pid" "$(readyport "$n")" "$code" "$dir/log/$n.log"
		else
			printf '%-10s stopped\n' "$n"
		fi
	done
}

case ${1:-start} in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 [start|stop|status]" >&2
	exit 2
	;;
esac
