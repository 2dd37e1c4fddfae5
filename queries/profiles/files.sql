-- profile: files
-- description: Bounded JSON-lines inputs under data/, alerts written as JSON lines under
--   out/. Malformed lines go to out/dead_letters/. Run from the directory holding data/.

CREATE SOURCE sensors (
    sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = 'data/sensors.jsonl', format = 'json',
    dead_letter_path = 'out/dead_letters/sensors.jsonl');

CREATE SOURCE payments (
    account_id BIGINT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = 'data/payments.jsonl', format = 'json');

CREATE SOURCE dues (
    account_id BIGINT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = 'data/dues.jsonl', format = 'json');

CREATE SOURCE logins (
    user_id TEXT, event_type TEXT, ip TEXT, device_id TEXT, new_device BOOLEAN,
    ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/logins.jsonl', format = 'json');

CREATE SOURCE transfers (
    user_id TEXT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/transfers.jsonl', format = 'json');

CREATE SOURCE city_events (
    city TEXT, event_type TEXT, severity TEXT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE
) WITH (connector = 'file', path = 'data/city_events.jsonl', format = 'json');

CREATE SINK sensor_alerts WITH (connector = 'file', path = 'out/sensor_alerts.jsonl');
CREATE SINK sensor_stats_1m WITH (connector = 'file', path = 'out/sensor_stats_1m.jsonl');
CREATE SINK sensor_stats_5m WITH (connector = 'file', path = 'out/sensor_stats_5m.jsonl');
CREATE SINK sensor_stats_hourly
WITH (connector = 'file', path = 'out/sensor_stats_hourly.jsonl');
CREATE SINK payment_due_alerts WITH (connector = 'file', path = 'out/payment_due_alerts.jsonl');
CREATE SINK brute_force_alerts WITH (connector = 'file', path = 'out/brute_force_alerts.jsonl');
CREATE SINK temperature_zscore_alerts
WITH (connector = 'file', path = 'out/temperature_zscore_alerts.jsonl');
CREATE SINK silent_sensor_alerts
WITH (connector = 'file', path = 'out/silent_sensor_alerts.jsonl');
CREATE SINK rapid_activity_alerts
WITH (connector = 'file', path = 'out/rapid_activity_alerts.jsonl');
CREATE SINK login_then_transfer_alerts
WITH (connector = 'file', path = 'out/login_then_transfer_alerts.jsonl');
CREATE SINK city_event_counts
WITH (connector = 'file', path = 'out/city_event_counts.jsonl');
CREATE SINK rising_temperature_alerts
WITH (connector = 'file', path = 'out/rising_temperature_alerts.jsonl');
CREATE SINK login_burst_alerts WITH (connector = 'file', path = 'out/login_burst_alerts.jsonl');
