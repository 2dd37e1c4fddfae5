-- profile: kafka
-- description: The rules on Kafka topics. Brokers come from VIGIL_KAFKA_BROKERS or
--   --brokers (default localhost:9092), never from this file. Input topics: sensors,
--   payments, dues, logins, transfers, city_events, each keyed by the id the rules
--   group or join by (sensor_id, account_id, user_id, city) so several processes can share a rule.
--   Malformed messages go to the topic dead_letters. Every source reads through a
--   consumer group (group_id), so a restarted rule resumes from its committed offsets and
--   several processes share a rule's partitions. `vigil demo --kafka` creates the topics and feeds them.

CREATE SOURCE sensors (
    sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'kafka', topic = 'sensors', format = 'json',
    partitioned_by = 'sensor_id', dead_letter_topic = 'dead_letters',
    group_id = 'vigil');

CREATE SOURCE payments (
    account_id BIGINT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'kafka', topic = 'payments', format = 'json',
    partitioned_by = 'account_id', dead_letter_topic = 'dead_letters',
    group_id = 'vigil');

CREATE SOURCE dues (
    account_id BIGINT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'kafka', topic = 'dues', format = 'json',
    partitioned_by = 'account_id', dead_letter_topic = 'dead_letters',
    group_id = 'vigil');

CREATE SOURCE logins (
    user_id TEXT, event_type TEXT, ip TEXT, device_id TEXT, new_device BOOLEAN,
    ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'kafka', topic = 'logins', format = 'json',
    partitioned_by = 'user_id', dead_letter_topic = 'dead_letters',
    group_id = 'vigil');

CREATE SOURCE transfers (
    user_id TEXT, amount DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'kafka', topic = 'transfers', format = 'json',
    partitioned_by = 'user_id', dead_letter_topic = 'dead_letters',
    group_id = 'vigil');

CREATE SOURCE city_events (
    city TEXT, event_type TEXT, severity TEXT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE
) WITH (connector = 'kafka', topic = 'city_events', format = 'json',
    partitioned_by = 'city', dead_letter_topic = 'dead_letters',
    group_id = 'vigil');

CREATE SINK sensor_alerts WITH (connector = 'kafka', topic = 'sensor_alerts', key = 'sensor_id');
CREATE SINK sensor_stats_1m
WITH (connector = 'kafka', topic = 'sensor_stats_1m', key = 'sensor_id');
CREATE SINK sensor_stats_5m
WITH (connector = 'kafka', topic = 'sensor_stats_5m', key = 'sensor_id');
CREATE SINK sensor_stats_hourly
WITH (connector = 'kafka', topic = 'sensor_stats_hourly', key = 'sensor_id, window_start');
-- An upsert topic: the latest value per account; a tombstone when it is no longer due.
CREATE SINK payment_due_alerts
WITH (connector = 'kafka', topic = 'payment_due_alerts', key = 'account_id');
CREATE SINK brute_force_alerts
WITH (connector = 'kafka', topic = 'brute_force_alerts', key = 'user_id');
CREATE SINK temperature_zscore_alerts
WITH (connector = 'kafka', topic = 'temperature_zscore_alerts', key = 'sensor_id');
CREATE SINK silent_sensor_alerts
WITH (connector = 'kafka', topic = 'silent_sensor_alerts', key = 'sensor_id');
CREATE SINK rapid_activity_alerts
WITH (connector = 'kafka', topic = 'rapid_activity_alerts', key = 'user_id');
CREATE SINK login_then_transfer_alerts
WITH (connector = 'kafka', topic = 'login_then_transfer_alerts', key = 'user_id');
CREATE SINK city_event_counts
WITH (connector = 'kafka', topic = 'city_event_counts', key = 'city');
CREATE SINK rising_temperature_alerts
WITH (connector = 'kafka', topic = 'rising_temperature_alerts', key = 'sensor_id');
CREATE SINK login_burst_alerts
WITH (connector = 'kafka', topic = 'login_burst_alerts', key = 'user_id');
