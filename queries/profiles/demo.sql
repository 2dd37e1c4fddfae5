-- profile: demo
-- description: Generated events paced in real time; alerts printed on the terminal.
--   `vigil demo` runs this profile with every rule in queries/.

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

CREATE SINK sensor_alerts
WITH (connector = 'stdout', title = 'sensor_alerts (sensor_threshold.sql)');
CREATE SINK sensor_stats_1m
WITH (connector = 'stdout', title = 'sensor_stats_1m (sensor_windows.sql)');
CREATE SINK sensor_stats_5m
WITH (connector = 'stdout', title = 'sensor_stats_5m (sensor_windows.sql)');
CREATE SINK sensor_stats_hourly
WITH (connector = 'stdout', title = 'sensor_stats_hourly (sensor_hourly.sql)');
CREATE SINK payment_due_alerts
WITH (connector = 'stdout', title = 'payment_due_alerts (payment_due.sql)');
CREATE SINK brute_force_alerts
WITH (connector = 'stdout', title = 'brute_force_alerts (brute_force.sql)');
CREATE SINK temperature_zscore_alerts
WITH (connector = 'stdout', title = 'temperature_zscore_alerts (temperature_zscore.sql)');
CREATE SINK silent_sensor_alerts
WITH (connector = 'stdout', title = 'silent_sensor_alerts (silent_sensor.sql)');
CREATE SINK rapid_activity_alerts
WITH (connector = 'stdout', title = 'rapid_activity_alerts (rapid_activity.sql)');
CREATE SINK login_then_transfer_alerts
WITH (connector = 'stdout', title = 'login_then_transfer_alerts (login_then_transfer.sql)');
CREATE SINK city_event_counts
WITH (connector = 'stdout', title = 'city_event_counts (city_events.sql)');
CREATE SINK rising_temperature_alerts
WITH (connector = 'stdout', title = 'rising_temperature_alerts (rising_temperature.sql)');
CREATE SINK login_burst_alerts
WITH (connector = 'stdout', title = 'login_burst_alerts (login_burst_then_success.sql)');
