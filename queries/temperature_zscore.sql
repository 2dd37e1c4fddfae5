-- rule: temperature_zscore
-- description: A reading more than 3 standard deviations from the mean of its sensor's
--   last 10 minutes (the reading included), once the sensor has 10 readings there. Each
--   reading is scored when the watermark passes it, against every reading up to its time.
-- severity: warning
-- owner: iot-platform

CREATE VIEW sensor_baselines AS
SELECT
    sensor_id,
    ts,
    temperature,
    avg(temperature) OVER last_10_minutes AS mean_temperature,
    stddev_samp(temperature) OVER last_10_minutes AS stddev_temperature,
    count(*) OVER last_10_minutes AS readings
FROM sensors
WINDOW last_10_minutes AS (
    PARTITION BY sensor_id ORDER BY ts
    RANGE BETWEEN INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW
);

CREATE SINK temperature_zscore_alerts AS
SELECT
    sensor_id,
    ts,
    temperature,
    round(mean_temperature, 2) AS mean_temperature,
    round((temperature - mean_temperature) / stddev_temperature, 2) AS zscore
FROM sensor_baselines
WHERE readings >= 10 AND abs(temperature - mean_temperature) > 3 * stddev_temperature;
