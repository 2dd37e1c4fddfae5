-- rule: sensor_hourly
-- description: Hourly statistics per sensor, kept current for a dashboard: each open
--   hour's running figures every minute of event time (or of wall time when readings
--   stop), its final row when it closes, and corrections from readings up to 10 minutes
--   late. The output is a changelog, upserted by sensor and hour.
-- severity: info
-- owner: iot-platform

CREATE SINK sensor_stats_hourly AS
SELECT
    window_start,
    window_end,
    sensor_id,
    count(*) AS readings,
    avg(temperature) AS avg_temperature,
    max(temperature) AS max_temperature
FROM TUMBLE(sensors, ts, INTERVAL '1' HOUR)
GROUP BY window_start, window_end, sensor_id
EMIT EARLY EVERY INTERVAL '1' MINUTE
ALLOWED LATENESS INTERVAL '10' MINUTE;
