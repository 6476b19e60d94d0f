#!/bin/sh
# Runs a Vigil node (`node [V8 flags] <main.js>`) and turns its readiness line,
# {"msg":"ready",...} on stdout, into a file that a Kubernetes exec probe can test
# (`test -f /tmp/vigil-ready`). The actor host and the controller serve no HTTP, and this line is
# the one signal they give that they are connected, bound to their consumers and serving.
#
# Output passes through unchanged. SIGTERM and SIGINT go to the node, which drains; the file is
# removed as soon as the node is told to stop, and when it exits. The exit status is the node's
# (70 after a supervisor escalation), so the orchestrator sees what the node said.
set -u
ready_file=${VIGIL_READY_FILE:-/tmp/vigil-ready}
rm -f "$ready_file"
work=$(mktemp -d)
mkfifo -m 600 "$work/stdout"

node "$@" >"$work/stdout" &
node_pid=$!
# Line by line only until the readiness line; then `cat` copies the rest at full speed.
{
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case $line in
      *'"msg":"ready"'*) : >"$ready_file" && break ;;
    esac
  done
  cat
} <"$work/stdout" &
reader_pid=$!

forward() {
  rm -f "$ready_file"
  kill -s "$1" "$node_pid" 2>/dev/null
}
trap 'forward TERM' TERM
trap 'forward INT' INT

# A trapped signal interrupts `wait`; keep waiting until the node itself has exited.
while :; do
  wait "$node_pid"
  status=$?
  kill -0 "$node_pid" 2>/dev/null || break
done
wait "$reader_pid"
rm -rf "$ready_file" "$work"
exit "$status"
