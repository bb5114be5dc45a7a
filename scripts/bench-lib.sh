# Shared by the scripts/bench*.sh benchmarks (sourced, POSIX sh).

# start_mailauthd BIN_DIR CONF LOG SOCKET...
# Starts BIN_DIR/mailauthd in the foreground, in the background, with its
# stderr appended to LOG; sets MAILAUTHD_PID; waits until every SOCKET
# exists (10 s at most, then prints LOG and exits 1).
start_mailauthd() {
  _bin=$1 _conf=$2 _log=$3
  shift 3
  "$_bin/mailauthd" --foreground --config "$_conf" 2>>"$_log" &
  MAILAUTHD_PID=$!
  wait_for_sockets "$_log" "$@"
}

# wait_for_sockets LOG SOCKET...: as above, for sockets of any daemon.
wait_for_sockets() {
  _log=$1
  shift
  _tries=0
  for _sock in "$@"; do
    while [ ! -S "$_sock" ]; do
      _tries=$((_tries + 1))
      [ "$_tries" -lt 200 ] || { cat "$_log"; exit 1; }
      sleep 0.05
    done
  done
}
