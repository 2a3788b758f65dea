#!/usr/bin/env bash
# SIP throughput benchmark (issue #4): `waihu dial` against a SIPp UAS that answers every
# call at once and streams a recorded voice until our BYE, both on this machine, loopback
# only. Prints waihu's report (calls/s, failures, setup latency, peak concurrent answered
# calls with media and AMD, CPU, RSS), SIPp's CPU and RSS, and SIPp's own statistics
# (its -trace_stat CSV is kept in target/sip-bench/).
#   scripts/sip-bench.sh                 # 31,200 calls at 520/s, each held 4 s: ~2,100 live
#   CALLS=5000 CPS=250 HOLD=8 scripts/sip-bench.sh
#   T1=100 CPS=1000 CALLS=60000 scripts/sip-bench.sh   # SIP T1 100 ms: Timer M 6.4 s
#   SCENARIO=uas_load_nomedia.xml AMD= CPS=1000 CALLS=60000 scripts/sip-bench.sh   # SIP only
#   WRAP="heaptrack -o target/sip-bench/heap" CALLS=5200 scripts/sip-bench.sh   # heap profile
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-31200}
CPS=${CPS:-520}
HOLD=${HOLD:-4}
PORT=${PORT:-25100}
MPORT=${MPORT:-26300}
AMD=${AMD---amd}  # AMD= (empty) turns AMD off
T1=${T1:-500}
./scripts/deps.sh
cargo build --release --bin waihu
dir=target/sip-bench
rm -rf "$dir" && mkdir -p "$dir"
SCENARIO=${SCENARIO:-uas_load.xml}
cp "tests/sipp/$SCENARIO" "$dir/uas_load.xml"
./target/release/waihu to-ulaw samples/call_04.wav "$dir/answer.ulaw"
limit=$(( CALLS / CPS + HOLD + 120 ))
(cd "$dir" && sipp -sf uas_load.xml -i 127.0.0.1 -p "$PORT" -mi 127.0.0.1 -mp "$MPORT" -nostdin -bg \
  -trace_stat -stf stat.csv -fd 5 -max_socket 60000 -timeout "${limit}s" > sipp.out 2>&1) || true  # -bg: the parent exits 99
sleep 0.5
sipp_pid=$(pgrep -n -f "uas_load.xml -i 127.0.0.1 -p $PORT" || true)
[ -n "$sipp_pid" ] || { echo "SIPp did not start: $(cat "$dir/sipp.out")" >&2; exit 1; }
trap 'kill "$sipp_pid" 2>/dev/null || true' EXIT
set +e
timeout "$limit" ${WRAP:-} ./target/release/waihu dial "sip:load@127.0.0.1:$PORT" --calls "$CALLS" --cps "$CPS" \
  --channels $(( CPS * HOLD * 2 + 100 )) --hold "$HOLD" --sip-t1-ms "$T1" $AMD | tee "$dir/dial.txt"
rc=${PIPESTATUS[0]}
set -e
echo "SIPp (pid $sipp_pid): CPU $(ps -o cputime= -p "$sipp_pid" | tr -d ' ') (hh:mm:ss), RSS $(( $(ps -o rss= -p "$sipp_pid") / 1024 )) MiB"
# Soft stop: SIPp writes its statistics file out as it exits.
kill -USR1 "$sipp_pid" 2>/dev/null || true
for _ in $(seq 1 30); do kill -0 "$sipp_pid" 2>/dev/null || break; sleep 0.5; done
kill "$sipp_pid" 2>/dev/null || true
sleep 0.5
python3 - "$dir/stat.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
if len(rows) < 2:
    sys.exit("SIPp wrote no statistics")
h, last = rows[0], rows[-1]
want = ["ElapsedTime(C)", "CallRate(C)", "IncomingCall(C)", "SuccessfulCall(C)", "FailedCall(C)",
        "FailedUnexpectedMessage(C)", "FailedMaxUDPRetrans(C)", "DeadCallMsgs(C)", "Retransmissions(C)",
        "ResponseTime1(C)", "CallLength(C)"]
print("SIPp statistics (cumulative, last row of target/sip-bench/stat.csv):")
for k in want:
    if k in h:
        print(f"  {k}: {last[h.index(k)]}")
peak = max(int(r[h.index('CurrentCall')]) for r in rows[1:] if r[h.index('CurrentCall')].isdigit())
print(f"  peak CurrentCall over the 5 s samples: {peak}")
PY
exit "$rc"
