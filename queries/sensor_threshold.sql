-- rule: sensor_threshold
-- description: Scores every reading against temperature and humidity thresholds and alerts
--   when the score is above 0. Temperature > 35 or < 5 scores 3 (CRITICAL); otherwise > 30
--   or < 10 scores 1 (WARNING); humidity > 85 adds 2 (WARNING unless already worse).
-- severity: critical
-- owner: iot-platform

CREATE VIEW sensor_scores AS
SELECT
    sensor_id,
    temperature,
    humidity,
    ts,
    CASE
        WHEN temperature > 35 OR temperature < 5 THEN 3
        WHEN temperature > 30 OR temperature < 10 THEN 1
        ELSE 0
    END
    + CASE WHEN humidity > 85 THEN 2 ELSE 0 END AS score,
    CASE
        WHEN temperature > 35 OR temperature < 5 THEN 'CRITICAL'
        WHEN temperature > 30 OR temperature < 10 THEN 'WARNING'
        WHEN humidity > 85 THEN 'WARNING'
        ELSE 'NORMAL'
    END AS level,
    string_to_array(
        concat_ws(',',
            CASE
                WHEN temperature > 35 THEN 'HIGH_TEMPERATURE'
                WHEN temperature < 5 THEN 'LOW_TEMPERATURE'
                WHEN temperature > 30 OR temperature < 10 THEN 'TEMP_WARNING'
            END,
            CASE WHEN humidity > 85 THEN 'HIGH_HUMIDITY' END),
        ',') AS reasons
FROM sensors;

CREATE SINK sensor_alerts AS
SELECT
    sensor_id,
    temperature,
    humidity,
    ts,
    score,
    level,
    reasons,
    CASE WHEN score > 2 THEN 'ANOMALY_DETECTED' ELSE 'WARNING_DETECTED' END AS prediction
FROM sensor_scores
WHERE score > 0;
