#!/usr/bin/env bash
# Time to agent (issue #11): `waihu serve` runs a progressive campaign of CALLS live people
# (a SIPp UAS streams a recorded human greeting) with AGENTS agents in persistent sessions
# (another SIPp plays their phones: it registers them with digest auth, answers their
# session calls and streams a tone). Serve prints, at its end, the time from each AMD human
# decision to the bridge over every connected call (median, p99, max). With SHARDS=2 about
# half of the bridges cross shards. Loopback only; every process is bounded in time.
#   scripts/agent-bench.sh                       # 500 calls, 20 agents, 2 shards
#   CALLS=1000 AGENTS=40 scripts/agent-bench.sh
#   CONNECT=on-demand scripts/agent-bench.sh     # a call to an auto-answering phone per customer:
#                                                # time to agent is then to the phone's answer
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-500}
AGENTS=${AGENTS:-20}
SHARDS=${SHARDS:-2}
TALK=${TALK:-3}          # each call lasts this long after the answer (max_duration)
WRAP=${WRAP:-1}          # wrap-up after each call
CONNECT=${CONNECT:-persistent}
./scripts/deps.sh
cargo build --release --bin waihu
W=./target/release/waihu
dir=target/agent-bench
rm -rf "$dir" && mkdir -p "$dir"
cp tests/sipp/uas_campaign.xml tests/sipp/uas_phones.xml tests/sipp/reg_agents.xml "$dir/"
$W to-ulaw samples/call_04.wav "$dir/human.ulaw"
$W to-ulaw samples/call_01.wav "$dir/machine.ulaw"
python3 - "$dir" <<'PY'
import math, struct, sys, wave
d = sys.argv[1]
# The agents' microphone: a 440 Hz tone, 10 s (looped by SIPp).
w = wave.open(f"{d}/phone.wav", "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(80000)))
w = wave.open(f"{d}/harbour.wav", "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 600 * i / 8000))) for i in range(8000)))
PY
$W to-ulaw "$dir/phone.wav" "$dir/phone.ulaw"
CUST_PORT=${CUST_PORT:-25300}; PHONES_PORT=${PHONES_PORT:-25310}; REG_PORT=${REG_PORT:-25320}; SIP_PORT=${SIP_PORT:-25330}
printf 'name = "bench"\nabandon_cap = 0.03\nabandon_window_hours = 24\nwindow = ["00:00", "23:59"]\n' > "$dir/profile.toml"
cat > "$dir/campaign.toml" <<TOML
mode = "progressive"
compliance = "profile.toml"
default_timezone = "UTC"
safe_harbour = "harbour.wav"
ring_timeout_seconds = 10
max_duration_seconds = $TALK
wrap_up_seconds = $WRAP
keepalive = "${KEEPALIVE:-off}"
[[trunk]]
name = "sipp"
host = "127.0.0.1"
port = $CUST_PORT
max_cps = 200
max_channels = 1000
options_interval_secs = 0
TOML
# Every number ends in 0-4: uas_campaign.xml answers those with the human greeting.
python3 - "$dir/contacts.csv" "$CALLS" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("phone,name\n")
    for i in range(int(sys.argv[2])):
        f.write(f"+86138{i // 5:05d}{i % 5:01d}0{i % 5},P{i}\n")
PY
store="$dir/store"
$W campaign create --store "$store" --name bench --config "$dir/campaign.toml" > /dev/null
$W campaign import --store "$store" --name bench "$dir/contacts.csv" > /dev/null
for i in $(seq 1 "$AGENTS"); do
  $W agent add --store "$store" "agent$i" --password "password$i" --campaign bench --connect "$CONNECT" > /dev/null
done
$W campaign start --store "$store" --name bench > /dev/null
limit=$(( CALLS * (TALK + WRAP + 4) / AGENTS + 120 ))
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
(cd "$dir" && exec timeout "$limit" sipp -sf uas_campaign.xml -i 127.0.0.1 -p "$CUST_PORT" -mi 127.0.0.1 -mp 26500 \
  -nostdin -max_socket 10000 > customers.out 2>&1) & pids+=($!)
(cd "$dir" && exec timeout "$limit" sipp -sf uas_phones.xml -i 127.0.0.1 -p "$PHONES_PORT" -mi 127.0.0.1 -mp 26600 \
  -nostdin > phones.out 2>&1) & pids+=($!)
sleep 0.5
echo "== waihu serve: $CALLS live people, $AGENTS agents ($CONNECT), $SHARDS shards"
timeout "$limit" $W serve --store "$store" --sip-bind "127.0.0.1:$SIP_PORT" --shards "$SHARDS" \
  --rtp-ports 30000-33999 --exit-when-idle --status-every 10 2> "$dir/serve.err" > "$dir/serve.json" & serve_pid=$!
pids+=($serve_pid)
sleep 1
for i in $(seq 1 "$AGENTS"); do
  (cd "$dir" && timeout 10 sipp -sf reg_agents.xml -i 127.0.0.1 -p "$REG_PORT" -s "agent$i" -au "agent$i" -ap "password$i" \
    -key phones_port "$PHONES_PORT" -m 1 "127.0.0.1:$SIP_PORT" -nostdin > "reg-$i.out" 2>&1) \
    || { echo "agent$i did not register: $(tail -5 "$dir/reg-$i.out")" >&2; exit 1; }
done
echo "== $AGENTS agents registered"
wait "$serve_pid" || { echo "serve failed: $(tail -20 "$dir/serve.err")" >&2; exit 1; }
grep -E "time to agent|time to audio|group commit" "$dir/serve.err"
$W cdr export --store "$store" --campaign bench --out "$dir/cdr.csv" > /dev/null
python3 - "$dir/cdr.csv" <<'PY'
import csv, collections, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("records:", len(rows), dict(collections.Counter(r["disposition"] for r in rows)))
PY
