#!/usr/bin/env bash
# Launch an infonce run over ssh: the coordinator on this machine, one
# worker on every host of a hostfile; every process's output goes to a log
# file of its own.
#
#   deploy/ssh/launch.sh HOSTFILE [coordinator flags...]
#   INFONCE_STEPS=500 deploy/ssh/launch.sh hosts.txt --batch 1024
#
# HOSTFILE has one host per line ([user@]host; blank lines and # comments
# are skipped); a host listed twice runs two workers.
#
# Settings (environment):
#   INFONCE_BIN          the binary here (default: infonce on PATH, else ./bin/infonce)
#   INFONCE_REMOTE_BIN   the binary on the hosts (default: the same path as here)
#   INFONCE_SSH          the ssh command (default: ssh -o BatchMode=yes); it is
#                        called as `$INFONCE_SSH HOST COMMAND`
#   INFONCE_OUT          run directory, on a file system the hosts share with
#                        this machine (default ./runs/ssh); rank 0 writes it,
#                        the coordinator resumes from it
#   INFONCE_LOG_DIR      where the logs go (default $INFONCE_OUT/logs/<time>)
#   INFONCE_COORDINATOR_IP  address the hosts reach this machine at
#                        (default: the source address of the route to the first host)
#   INFONCE_PORT, INFONCE_GOSSIP_PORT  coordinator ports (default 7950, 7946)
#   INFONCE_TOKEN        shared secret (default: one made for the run)
# Any other INFONCE_<FLAG> sets that flag of the coordinator (the training
# flags). INFONCE_DATA (train --data) names data at a path every host sees
# alike (a shared mount, or a copy at the same path on each): every worker
# opens it itself and reads only its own rows.
#
# A host runs `$INFONCE_REMOTE_BIN worker`, binding the address its route
# to the coordinator leaves from, on free ports. Its ssh session's
# standard input stays open while this script runs: when the script ends
# (even by SIGKILL), the input closes and the remote worker is sent SIGTERM
# (it finishes its step and leaves). Ctrl-C stops the run the same way;
# rank 0 saves a checkpoint, and running the script again with the same
# INFONCE_OUT continues from it.
set -euo pipefail

usage() { echo "usage: $0 HOSTFILE [coordinator flags...]" >&2; exit 2; }
(( $# >= 1 )) || usage
hostfile=$1
shift
[[ -r $hostfile ]] || { echo "launch.sh: cannot read hostfile $hostfile" >&2; exit 2; }

hosts=()
while IFS= read -r line || [[ -n $line ]]; do
	line=${line%%#*}
	line=$(echo "$line" | tr -d '[:space:]')
	[[ -n $line ]] && hosts+=("$line")
done < "$hostfile"
(( ${#hosts[@]} > 0 )) || { echo "launch.sh: no host in $hostfile" >&2; exit 2; }

bin=${INFONCE_BIN:-}
if [[ -z $bin ]]; then
	if command -v infonce >/dev/null 2>&1; then bin=$(command -v infonce); else bin=./bin/infonce; fi
fi
[[ -x $bin ]] || { echo "launch.sh: no infonce binary at $bin (set INFONCE_BIN)" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
remote_bin=${INFONCE_REMOTE_BIN:-$bin}
read -r -a ssh_cmd <<< "${INFONCE_SSH:-ssh -o BatchMode=yes}"

out=${INFONCE_OUT:-./runs/ssh}
mkdir -p "$out"
out=$(cd "$out" && pwd)
logs=${INFONCE_LOG_DIR:-$out/logs/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$logs"

# The address the hosts reach this machine at: the source of the route to
# the first host.
first=${hosts[0]#*@}
first_ip=$(getent ahostsv4 "$first" 2>/dev/null | awk '{ print $1; exit }')
coord_ip=${INFONCE_COORDINATOR_IP:-}
if [[ -z $coord_ip && -n $first_ip ]]; then
	coord_ip=$(ip -o route get "$first_ip" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
fi
[[ -n $coord_ip ]] || { echo "launch.sh: cannot tell this machine's address for $first; set INFONCE_COORDINATOR_IP" >&2; exit 2; }
port=${INFONCE_PORT:-7950}
gossip_port=${INFONCE_GOSSIP_PORT:-7946}
token=${INFONCE_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}


# The lifeline: a FIFO that this shell alone holds open for writing. Every
# ssh reads it as standard input; it reaches end-of-file when this shell
# is gone.
lifeline=$logs/.lifeline
rm -f "$lifeline"
mkfifo "$lifeline"
exec 7<>"$lifeline"

echo "launch.sh: coordinator $coord_ip:$port, ${#hosts[@]} worker(s), run directory $out, logs in $logs"
INFONCE_TOKEN=$token "$bin" coordinator --lan --workers "${#hosts[@]}" \
	--bind 0.0.0.0 --advertise "$coord_ip" --port "$port" --gossip-port "$gossip_port" \
	--out "$out" --resume "${INFONCE_RESUME:-auto}" "$@" > "$logs/coordinator.log" 2>&1 7>&- &
coord_pid=$!

# The command a host runs, quoted for its shell: find the source address
# towards the coordinator, start the worker, and stop it when the ssh
# session's input ends.
remote_script='
src=$(ip -o route get "$1" 2>/dev/null | sed -n "s/.* src \([0-9.]*\).*/\1/p")
[ -n "$src" ] || src=$(hostname -I 2>/dev/null | awk "{ print \$1 }")
[ -n "$src" ] || src=127.0.0.1
exec 3<&0
cat <&3 >/dev/null 2>&1 &
c=$!
INFONCE_TOKEN=$3 "$2" worker --coordinator "$1:$4" --name "$(hostname)-$5" --out "$6" \
	--data-bind "$src:0" --gossip-bind "$src" --gossip-port 0 --lan </dev/null &
w=$!
while kill -0 "$w" 2>/dev/null && kill -0 "$c" 2>/dev/null; do sleep 1; done
kill -0 "$w" 2>/dev/null && kill -TERM "$w"
st=0
wait "$w" || st=$?
kill "$c" 2>/dev/null
exit "$st"
'
# quote WORD for any POSIX shell: in single quotes, each ' as '\''
quote() { printf "'%s' " "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
pids=()
for i in "${!hosts[@]}"; do
	h=${hosts[$i]}
	remote="sh -c $(quote "$remote_script") infonce-worker"
	for a in "$coord_ip" "$remote_bin" "$token" "$port" "$i" "$out"; do
		remote+=" $(quote "$a")"
	done
	"${ssh_cmd[@]}" "$h" "$remote" < "$lifeline" > "$logs/worker-$i-${h//[^A-Za-z0-9._-]/_}.log" 2>&1 7>&- &
	pids+=($!)
done

stop() {
	echo "launch.sh: stopping" >&2
	exec 7>&-
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	kill -TERM "$coord_pid" 2>/dev/null || true
	wait "$coord_pid" 2>/dev/null || true
	rm -f "$lifeline"
	exit 130
}
trap stop INT TERM

status=0
for i in "${!pids[@]}"; do
	if ! wait "${pids[$i]}"; then
		echo "launch.sh: worker $i on ${hosts[$i]} failed; see $logs/worker-$i-*.log" >&2
		status=1
	fi
done
# Workers that failed may leave the coordinator waiting for them.
if (( status != 0 )); then
	kill -TERM "$coord_pid" 2>/dev/null || true
fi
if ! wait "$coord_pid"; then
	echo "launch.sh: the coordinator failed; see $logs/coordinator.log" >&2
	status=1
fi
exec 7>&-
rm -f "$lifeline"
if [[ -f $out/summary.json ]]; then
	echo "launch.sh: done; summary in $out/summary.json"
fi
exit "$status"
