-- rule: rising_temperature
-- description: A sensor whose readings rise three or more times in a row, ending above
--   30 degrees, within two minutes (an event pattern, MATCH_RECOGNIZE). One alert per run:
--   the search goes on after the run's last reading.
-- severity: warning
-- owner: iot-platform

CREATE SINK rising_temperature_alerts AS
SELECT sensor_id, first_ts, last_ts, first_temperature, last_temperature, readings
FROM sensors MATCH_RECOGNIZE (
    PARTITION BY sensor_id
    ORDER BY ts
    MEASURES
        FIRST(A.ts) AS first_ts,
        LAST(C.ts) AS last_ts,
        FIRST(A.temperature) AS first_temperature,
        LAST(C.temperature) AS last_temperature,
        COUNT(*) AS readings
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B+ C) WITHIN INTERVAL '2' MINUTE
    DEFINE
        B AS B.temperature > PREV(B.temperature),
        C AS C.temperature > PREV(C.temperature) AND C.temperature > 30
);
