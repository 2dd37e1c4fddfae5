-- profile: postgres
-- description: Generated events paced in real time; results written into PostgreSQL tables
--   (TimescaleDB works through it) for Grafana (docs/grafana/). The connection comes from
--   VIGIL_POSTGRES_URL, e.g. postgres://vigil@127.0.0.1:5432/alerts; tables are created on
--   first start. For Kafka input, take the sources of profiles/kafka.sql instead.

CREATE SOURCE sensors (
    sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'generator', kind = 'sensors', rate = '20', keys = '5', anomaly_ratio = '0.05');

CREATE SOURCE payments (
    account_id BIGINT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'generator', kind = 'payments', rate = '5', keys = '10');

CREATE SOURCE dues (
    account_id BIGINT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'generator', kind = 'dues', rate = '5', keys = '10', anomaly_ratio = '0.1');

CREATE SOURCE logins (
    user_id TEXT, event_type TEXT, ip TEXT, device_id TEXT, new_device BOOLEAN,
    ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'generator', kind = 'logins', rate = '20', keys = '30', anomaly_ratio = '0.02');

CREATE SOURCE transfers (
    user_id TEXT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
)
WITH (connector = 'generator', kind = 'transfers', rate = '5', keys = '30', anomaly_ratio = '0.05');

CREATE SOURCE city_events (
    city TEXT, event_type TEXT, severity TEXT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE
)
WITH (connector = 'generator', kind = 'city_events', rate = '5', keys = '8', anomaly_ratio = '0.05');

-- Alerts are appended (binary COPY). Windowed statistics are keyed by their window, so a
-- row written again after a restart replaces itself; the updating payment_due rule keeps its
-- current answer by account. With TimescaleDB, add create = 'hypertable' (and time_column
-- where the time column is not window_start) to the windowed tables.
CREATE SINK sensor_alerts WITH (connector = 'postgres', table = 'sensor_alerts');
CREATE SINK sensor_stats_1m
WITH (connector = 'postgres', table = 'sensor_stats_1m', key = 'sensor_id, window_start');
CREATE SINK sensor_stats_5m
WITH (connector = 'postgres', table = 'sensor_stats_5m', key = 'sensor_id, window_start');
CREATE SINK sensor_stats_hourly
WITH (connector = 'postgres', table = 'sensor_stats_hourly', key = 'sensor_id, window_start');
CREATE SINK payment_due_alerts
WITH (connector = 'postgres', table = 'payment_due_alerts', key = 'account_id');
CREATE SINK brute_force_alerts
WITH (connector = 'postgres', table = 'brute_force_alerts', key = 'user_id, window_start');
CREATE SINK temperature_zscore_alerts
WITH (connector = 'postgres', table = 'temperature_zscore_alerts');
CREATE SINK silent_sensor_alerts
WITH (connector = 'postgres', table = 'silent_sensor_alerts', key = 'sensor_id, first_reading');
CREATE SINK rapid_activity_alerts
WITH (connector = 'postgres', table = 'rapid_activity_alerts', key = 'user_id, window_start');
CREATE SINK login_then_transfer_alerts
WITH (connector = 'postgres', table = 'login_then_transfer_alerts');
CREATE SINK city_event_counts
WITH (connector = 'postgres', table = 'city_event_counts', key = 'city, event_type, window_start');
CREATE SINK rising_temperature_alerts
WITH (connector = 'postgres', table = 'rising_temperature_alerts', key = 'sensor_id, first_ts');
CREATE SINK login_burst_alerts
WITH (connector = 'postgres', table = 'login_burst_alerts', key = 'user_id, first_failure_ts');
