#!/usr/bin/env python3
"""Times single-thread DuckDB on the JSON-lines files `cargo bench --bench throughput` reads.

Run the bench's file cases first (they write target/bench-data/), then:

    pip install duckdb
    python3 benches/duckdb_peer.py            # 10M events, as the bench's default
    python3 benches/duckdb_peer.py 1000000    # the files of a VIGIL_BENCH_EVENTS=1000000 run
    VIGIL_BENCH_CASES=Q2,Q15 python3 benches/duckdb_peer.py   # some cases, as the bench picks

Each query runs in a process of its own, reads the same file Vigil's file case reads and
writes its result to a JSON-lines file (file in, file out, as `vigil run`), with
`SET threads = 1`. DuckDB computes each final result once: for Q4 that is the outstanding
amounts at the end, where Vigil emits the changelog of every update.
"""

import os
import subprocess
import sys
import time

SENSORS = "read_json('{data}/sensors-{n}.jsonl', format = 'newline_delimited', columns = {{" \
    "'sensor_id': 'VARCHAR', 'temperature': 'DOUBLE', 'humidity': 'DOUBLE', 'ts': 'TIMESTAMP'}})"
LEDGER = "read_json('{data}/{name}-{n}.jsonl', format = 'newline_delimited', columns = {{" \
    "'account_id': 'BIGINT', 'amount': 'DOUBLE', 'ts': 'TIMESTAMP'}})"
BIDS = "read_json('{data}/bids-{n}.jsonl', format = 'newline_delimited', columns = {{" \
    "'auction': 'BIGINT', 'bidder': 'BIGINT', 'price': 'BIGINT', 'ts': 'TIMESTAMP'}})"
PERSONS = "read_json('{data}/persons-{n}.jsonl', format = 'newline_delimited', columns = {{" \
    "'id': 'BIGINT', 'name': 'VARCHAR', 'city': 'VARCHAR', 'ts': 'TIMESTAMP'}})"
AUCTIONS = "read_json('{data}/auctions-{n}.jsonl', format = 'newline_delimited', columns = {{" \
    "'id': 'BIGINT', 'seller': 'BIGINT', 'category': 'BIGINT', 'ts': 'TIMESTAMP'}})"

THRESHOLD = """
SELECT sensor_id, temperature, humidity, ts, score, level, reasons,
       CASE WHEN score > 2 THEN 'ANOMALY_DETECTED' ELSE 'WARNING_DETECTED' END AS prediction
FROM (
  SELECT sensor_id, temperature, humidity, ts,
    CASE WHEN temperature > 35 OR temperature < 5 THEN 3
         WHEN temperature > 30 OR temperature < 10 THEN 1 ELSE 0 END
    + CASE WHEN humidity > 85 THEN 2 ELSE 0 END AS score,
    CASE WHEN temperature > 35 OR temperature < 5 THEN 'CRITICAL'
         WHEN temperature > 30 OR temperature < 10 THEN 'WARNING'
         WHEN humidity > 85 THEN 'WARNING' ELSE 'NORMAL' END AS level,
    string_split(concat_ws(',',
        CASE WHEN temperature > 35 THEN 'HIGH_TEMPERATURE'
             WHEN temperature < 5 THEN 'LOW_TEMPERATURE'
             WHEN temperature > 30 OR temperature < 10 THEN 'TEMP_WARNING' END,
        CASE WHEN humidity > 85 THEN 'HIGH_HUMIDITY' END), ',') AS reasons
  FROM {sensors}
) WHERE score > 0
"""

TUMBLE = """
SELECT time_bucket(INTERVAL 1 MINUTE, ts) AS window_start,
       time_bucket(INTERVAL 1 MINUTE, ts) + INTERVAL 1 MINUTE AS window_end,
       sensor_id, count(*) AS readings, avg(temperature) AS avg_temperature,
       max(temperature) AS max_temperature
FROM {sensors} GROUP BY ALL
"""

# Q14 emits these early too; DuckDB computes each final row once.
TUMBLE_1H = """
SELECT time_bucket(INTERVAL 1 HOUR, ts) AS window_start,
       time_bucket(INTERVAL 1 HOUR, ts) + INTERVAL 1 HOUR AS window_end,
       sensor_id, count(*) AS readings, avg(temperature) AS avg_temperature,
       max(temperature) AS max_temperature
FROM {sensors} GROUP BY ALL
"""

# A hopping window as DuckDB has none: each reading copied into each of its windows.
HOP = """
SELECT time_bucket(INTERVAL 1 MINUTE, ts) - k * INTERVAL 1 MINUTE AS window_start,
       time_bucket(INTERVAL 1 MINUTE, ts) - k * INTERVAL 1 MINUTE + INTERVAL {size} MINUTE
           AS window_end,
       sensor_id, count(*) AS readings, avg(temperature) AS avg_temperature{extra}
FROM {sensors}, range({size}) AS copies(k) GROUP BY ALL
"""

PAYMENT_DUE = """
SELECT account_id, sum(due) - sum(paid) AS outstanding
FROM (SELECT account_id, amount AS due, 0.0 AS paid FROM {dues}
      UNION ALL SELECT account_id, 0.0 AS due, amount AS paid FROM {payments})
GROUP BY account_id HAVING sum(due) - sum(paid) > 150
"""

ZSCORE = """
SELECT sensor_id, ts, temperature, round(mean, 2) AS mean_temperature,
       round((temperature - mean) / sd, 2) AS zscore
FROM (
  SELECT sensor_id, ts, temperature, avg(temperature) OVER w AS mean,
         stddev_samp(temperature) OVER w AS sd, count(*) OVER w AS readings
  FROM {sensors}
  WINDOW w AS (PARTITION BY sensor_id ORDER BY ts
               RANGE BETWEEN INTERVAL 10 MINUTE PRECEDING AND CURRENT ROW)
) WHERE readings >= 10 AND abs(temperature - mean) > 3 * sd
"""

PEAKS = """
WITH r AS (SELECT sensor_id, temperature, ts, time_bucket(INTERVAL 10 SECOND, ts) AS ws
           FROM {sensors})
SELECT r.sensor_id, r.temperature, r.ts
FROM r JOIN (SELECT ws, max(temperature) AS peak FROM r GROUP BY ws) m
  ON r.ws = m.ws AND r.temperature = m.peak
"""

PAIRS = """
WITH hot AS (SELECT sensor_id, ts FROM {sensors} WHERE temperature > 30)
SELECT a.sensor_id, a.ts AS first_ts, b.ts AS second_ts
FROM hot a JOIN hot b
  ON a.sensor_id = b.sensor_id AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL 2 SECOND
"""

# Nexmark q5 with its sliding windows as copies of each bid, as for HOP above.
HOT_ITEMS = """
WITH w AS (SELECT auction, time_bucket(INTERVAL 2 SECOND, ts) - k * INTERVAL 2 SECOND AS ws
           FROM {bids}, range(5) AS copies(k)),
     c AS (SELECT auction, ws, count(*) AS num FROM w GROUP BY ALL)
SELECT c.ws, c.auction, c.num
FROM c JOIN (SELECT ws, max(num) AS maxn FROM c GROUP BY ws) m ON c.ws = m.ws AND c.num >= m.maxn
"""

NEW_SELLERS = """
WITH p AS (SELECT DISTINCT id, name, time_bucket(INTERVAL 10 SECOND, ts) AS ws FROM {persons}),
     a AS (SELECT DISTINCT seller, time_bucket(INTERVAL 10 SECOND, ts) AS ws FROM {auctions})
SELECT p.id, p.name, p.ws FROM p JOIN a ON p.id = a.seller AND p.ws = a.ws
"""

CASES = [
    ("Q1 threshold", THRESHOLD, {}),
    ("Q2 tumble 1m", TUMBLE, {}),
    ("Q3 hop 5m/1m", HOP, {"size": 5, "extra": ", max(temperature) AS max_temperature"}),
    ("Q4 payment due", PAYMENT_DUE, {}),
    ("Q5 hop 1h/1m", HOP, {"size": 60, "extra": ""}),
    ("Q6 zscore OVER", ZSCORE, {}),
    ("Q7 window peaks", PEAKS, {}),
    ("Q8 interval join", PAIRS, {}),
    ("Q9 nexmark q5", HOT_ITEMS, {}),
    ("Q10 nexmark q8", NEW_SELLERS, {}),
    ("Q15 tumble 1h", TUMBLE_1H, {}),
]

# The cases reading two sources of half the events each.
TWO_SOURCES = {"Q4 payment due", "Q10 nexmark q8"}


def run_one(data, events, index):
    import duckdb

    name, sql, extra = CASES[index]
    ledger = events // 2
    query = sql.format(
        sensors=SENSORS.format(data=data, n=events),
        dues=LEDGER.format(data=data, name="dues", n=ledger),
        payments=LEDGER.format(data=data, name="payments", n=ledger),
        bids=BIDS.format(data=data, n=events),
        persons=PERSONS.format(data=data, n=ledger),
        auctions=AUCTIONS.format(data=data, n=ledger),
        **extra,
    )
    out = os.path.join(data, f"duckdb-{index}.jsonl")
    con = duckdb.connect()
    con.execute("SET threads = 1")
    started = time.perf_counter()
    con.execute(f"COPY ({query}) TO '{out}' (FORMAT json)")
    seconds = time.perf_counter() - started
    rows = con.execute(f"SELECT count(*) FROM read_json('{out}')").fetchone()[0]
    print(f"{seconds}\t{rows}\t{peak_rss_mb()}")


def peak_rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        run_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    data = os.path.abspath(os.path.join(target, "bench-data"))
    import duckdb

    print(f"DuckDB {duckdb.__version__}, 1 thread, files in {data}")
    print(f"{'case':<16} {'events':>12} {'seconds':>10} {'events/s':>14} {'peak RSS MB':>12} {'out rows':>10}")
    wanted = [c for c in os.environ.get("VIGIL_BENCH_CASES", "").split(",") if c]
    for index, (name, _, _) in enumerate(CASES):
        if wanted and name.split()[0] not in wanted:
            continue
        fed = (events // 2) * 2 if name in TWO_SOURCES else events
        done = subprocess.run(
            [sys.executable, __file__, "--one", data, str(events), str(index)],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            print(f"{name:<16} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        seconds, rows, rss = done.stdout.split()
        seconds, rss = float(seconds), float(rss)
        print(f"{name:<16} {fed:>12} {seconds:>10.2f} {fed / seconds:>14.0f} {rss:>12.1f} {rows:>10}")


if __name__ == "__main__":
    main()
