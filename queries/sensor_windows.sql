-- rule: sensor_windows
-- description: Per-sensor reading statistics: 1-minute tumbling windows, and 5-minute
--   windows sliding every minute. Each window is emitted once, when the watermark
--   (latest reading time minus 5 s, declared on the source) passes its end.
-- severity: info
-- owner: iot-platform

CREATE SINK sensor_stats_1m AS
SELECT
    window_start,
    window_end,
    sensor_id,
    count(*) AS readings,
    avg(temperature) AS avg_temperature,
    max(temperature) AS max_temperature
FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, sensor_id;

CREATE SINK sensor_stats_5m AS
SELECT
    window_start,
    window_end,
    sensor_id,
    count(*) AS readings,
    avg(temperature) AS avg_temperature,
    max(temperature) AS max_temperature
FROM HOP(sensors, ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, sensor_id;
