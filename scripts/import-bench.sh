#!/usr/bin/env bash
# Contact import at scale (issue #10): a generated CSV of ROWS contacts (phone, name,
# timezone, priority, a custom field) into a fresh store with `waihu campaign import`;
# prints wall time, rows per second and peak RSS (GNU time), and the store's size.
#   scripts/import-bench.sh              # 1,000,000 rows
#   ROWS=100000 scripts/import-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
./scripts/deps.sh
cargo build --release --bin waihu
W=./target/release/waihu
dir=target/import-bench
rm -rf "$dir" && mkdir -p "$dir"
python3 - "$dir/contacts.csv" "$ROWS" <<'PY'
import sys
zones = ["Asia/Shanghai", "Asia/Urumqi"]
with open(sys.argv[1], "w") as f:
    f.write("phone,name,timezone,priority,segment\n")
    for i in range(int(sys.argv[2])):
        f.write(f"+86138{i:08d},Customer {i},{zones[i % 2]},{i % 10},s{i % 7}\n")
PY
ls -l "$dir/contacts.csv"
printf 'mode = "broadcast"\nmessage = "m.wav"\ncompliance = "uk_ofcom"\n[[trunk]]\nhost = "127.0.0.1"\n' > "$dir/campaign.toml"
python3 -c "import wave,sys; w=wave.open(sys.argv[1],'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(b'\x00\x01'*8000)" "$dir/m.wav"
$W campaign create --store "$dir/store" --name big --config "$dir/campaign.toml"
start=$(date +%s.%N)
/usr/bin/time -f "import: %e s wall, %U s user, %S s system, peak RSS %M KiB" \
  $W campaign import --store "$dir/store" --name big "$dir/contacts.csv"
end=$(date +%s.%N)
python3 -c "import sys; print(f'{int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.0f} rows/s')" "$ROWS" "$start" "$end"
du -sh "$dir/store"
