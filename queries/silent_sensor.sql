-- rule: silent_sensor
-- description: A sensor that reported and then went quiet for 2 minutes: its session of
--   readings (readings less than 2 minutes apart) closes once the watermark is 2 minutes past
--   its last reading. On Kafka the watermark moves on with the wall clock while every
--   partition is idle (idle_advance), so the alert comes even when all sensors are quiet.
-- severity: warning
-- owner: iot-platform

CREATE SINK silent_sensor_alerts AS
SELECT
    sensor_id,
    window_start AS first_reading,
    window_end - INTERVAL '2' MINUTE AS last_reading,
    window_end AS silent_since,
    count(*) AS readings
FROM SESSION(sensors, ts, INTERVAL '2' MINUTE)
GROUP BY window_start, window_end, sensor_id;
