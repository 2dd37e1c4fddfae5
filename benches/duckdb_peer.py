#!/usr/bin/env python3
"""Times single-thread DuckDB on the JSON-lines files `cargo bench --bench throughput` reads.

Run the bench's file cases first (they write target/bench-data/), then:

    pip install duckdb
    python3 benches/duckdb_peer.py            # 10M events, as the bench's default
    python3 benches/duckdb_peer.py 1000000    # the files of a VIGIL_BENCH_EVENTS=1000000 run

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

CASES = [
    ("Q1 threshold", THRESHOLD, {}),
    ("Q2 tumble 1m", TUMBLE, {}),
    ("Q3 hop 5m/1m", HOP, {"size": 5, "extra": ", max(temperature) AS max_temperature"}),
    ("Q4 payment due", PAYMENT_DUE, {}),
    ("Q5 hop 1h/1m", HOP, {"size": 60, "extra": ""}),
]


def run_one(data, events, index):
    import duckdb

    name, sql, extra = CASES[index]
    ledger = events // 2
    query = sql.format(
        sensors=SENSORS.format(data=data, n=events),
        dues=LEDGER.format(data=data, name="dues", n=ledger),
        payments=LEDGER.format(data=data, name="payments", n=ledger),
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
    for index, (name, _, _) in enumerate(CASES):
        fed = events if index != 3 else (events // 2) * 2
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
