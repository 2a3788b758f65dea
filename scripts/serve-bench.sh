#!/usr/bin/env bash
# Campaign throughput (issue #10): `waihu serve` running a broadcast campaign, with a
# durable attempt record per call (group commit), against the same SIPp load UAS as
# `waihu dial`, side by side in one run: first `waihu dial` (no store), then `waihu serve`
# (store, contacts, attempts, CDR), the same number of calls at the same cap. Loopback only.
#   scripts/serve-bench.sh                   # 10,400 calls at 520/s each way
#   CALLS=31200 CPS=520 scripts/serve-bench.sh
#   MESSAGE_MS=2000 SHARDS=2 scripts/serve-bench.sh   # a longer message: more RTP to send
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-10400}
CPS=${CPS:-520}
HOLD=${HOLD:-4}
PORT=${PORT:-25200}
MPORT=${MPORT:-26400}
MESSAGE_MS=${MESSAGE_MS:-500}
SHARDS=${SHARDS:-1}
./scripts/deps.sh
cargo build --release --bin waihu
W=./target/release/waihu
dir=target/serve-bench
rm -rf "$dir" && mkdir -p "$dir"
cp tests/sipp/uas_load.xml "$dir/uas_load.xml"
$W to-ulaw samples/call_04.wav "$dir/answer.ulaw"
limit=$(( 2 * (CALLS / CPS + HOLD) + 240 ))
(cd "$dir" && sipp -sf uas_load.xml -i 127.0.0.1 -p "$PORT" -mi 127.0.0.1 -mp "$MPORT" -nostdin -bg \
  -max_socket 60000 -timeout "${limit}s" > sipp.out 2>&1) || true  # -bg: the parent exits 99
sleep 0.5
sipp_pid=$(pgrep -n -f "uas_load.xml -i 127.0.0.1 -p $PORT" || true)
[ -n "$sipp_pid" ] || { echo "SIPp did not start: $(cat "$dir/sipp.out")" >&2; exit 1; }
trap 'kill "$sipp_pid" 2>/dev/null || true' EXIT
channels=$(( CPS * (HOLD + 2) * 2 + 100 ))

echo "== waihu dial: $CALLS calls at $CPS/s, hold $HOLD s, AMD on, no store"
timeout "$limit" $W dial "sip:load@127.0.0.1:$PORT" --calls "$CALLS" --cps "$CPS" --channels "$channels" \
  --hold "$HOLD" --amd | tee "$dir/dial.txt"

echo "== waihu serve: a broadcast campaign of $CALLS contacts at $CPS/s, AMD on, a $MESSAGE_MS ms message, attempts durable"
# The message plays once AMD has heard a person (MESSAGE_MS of a 440 Hz tone). While it
# plays, the media shard sends 50 packets a second to the call: a long message at this rate
# is media-bound (see docs/benchmarks.md), so the default is short.
python3 - "$dir/message.wav" "$MESSAGE_MS" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
n = int(sys.argv[2]) * 8
w.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(n)))
PY
printf 'name = "bench"\nabandon_cap = 0.03\nabandon_window_hours = 24\nwindow = ["00:00", "23:59"]\n' > "$dir/profile.toml"
cat > "$dir/campaign.toml" <<TOML
mode = "broadcast"
lines = $channels
compliance = "profile.toml"
default_timezone = "UTC"
message = "message.wav"
ring_timeout_seconds = 20
max_duration_seconds = 30
keepalive = "off"   # as waihu dial's default: the comparison is like for like
[[trunk]]
name = "sipp"
host = "127.0.0.1"
port = $PORT
max_cps = $CPS
max_channels = $channels
options_interval_secs = 0
TOML
python3 - "$dir/contacts.csv" "$CALLS" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("phone\n")
    for i in range(int(sys.argv[2])):
        f.write(f"+86138{i:08d}\n")
PY
store="$dir/store"
$W campaign create --store "$store" --name bench --config "$dir/campaign.toml"
/usr/bin/time -f "import: %e s wall, peak RSS %M KiB" $W campaign import --store "$store" --name bench "$dir/contacts.csv"
$W campaign start --store "$store" --name bench
start=$(date +%s.%N)
timeout "$limit" /usr/bin/time -f "serve: %e s wall, %U s user, %S s system, peak RSS %M KiB" \
  $W serve --store "$store" --sip-bind 127.0.0.1:0 --shards "$SHARDS" --exit-when-idle --status-every 5 > "$dir/serve.json" 2> "$dir/serve.err"
end=$(date +%s.%N)
tail -12 "$dir/serve.err"
cat "$dir/serve.json"
$W cdr export --store "$store" --campaign bench --out "$dir/cdr.csv"
python3 - "$dir/cdr.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
inv = sorted(int(r["started_unix_ms"]) for r in rows if r["started_unix_ms"] not in ("", "0"))
span = (inv[-1] - inv[0]) / 1000 if len(inv) > 1 else 0
disp = {}
for r in rows:
    disp[r["disposition"]] = disp.get(r["disposition"], 0) + 1
setup = sorted(int(r["answer_ms"]) for r in rows if r["answer_ms"])
q = lambda p: setup[int((len(setup) - 1) * p)] if setup else 0
print(f"waihu serve: {len(rows)} attempts, {len(inv)} calls started over {span:.1f} s "
      f"({(len(inv) - 1) / span if span else 0:.1f} calls/s between the first and last call start)")
print(f"  dispositions: {disp}")
print(f"  setup latency INVITE->200: p50 {q(0.5)} ms, p99 {q(0.99)} ms, max {q(1.0)} ms")
PY
