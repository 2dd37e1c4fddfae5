-- profile: memory (tests)
-- The sources and sinks of queries/, fed by the tests' INSERTs.

CREATE SOURCE sensors (
    sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'memory', late_sink = 'late_sensors');

CREATE SOURCE payments (account_id BIGINT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'memory');
CREATE SOURCE dues (account_id BIGINT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'memory');

CREATE SOURCE logins (
    user_id TEXT, event_type TEXT, ip TEXT, device_id TEXT, new_device BOOLEAN, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'memory');

CREATE SOURCE transfers (
    user_id TEXT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'memory');

CREATE SOURCE city_events (
    city TEXT, event_type TEXT, severity TEXT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE
) WITH (connector = 'memory');

CREATE SINK late_sensors WITH (connector = 'memory');
CREATE SINK sensor_alerts WITH (connector = 'memory');
CREATE SINK sensor_stats_1m WITH (connector = 'memory');
CREATE SINK sensor_stats_5m WITH (connector = 'memory');
CREATE SINK payment_due_alerts WITH (connector = 'memory');
CREATE SINK brute_force_alerts WITH (connector = 'memory');
CREATE SINK silent_sensor_alerts WITH (connector = 'memory');
CREATE SINK temperature_zscore_alerts WITH (connector = 'memory');
CREATE SINK rapid_activity_alerts WITH (connector = 'memory');
CREATE SINK city_event_counts WITH (connector = 'memory');
CREATE SINK login_then_transfer_alerts WITH (connector = 'memory');
