-- rule: login_then_transfer
-- description: A transfer over 1,000 within 5 minutes after a successful login from a
--   device the user had not used before: an interval join of logins and transfers. Each
--   such login and transfer pair is one alert.
-- severity: critical
-- owner: fraud

CREATE SINK login_then_transfer_alerts AS
SELECT
    t.user_id,
    l.device_id,
    l.ip,
    l.ts AS login_ts,
    t.ts AS transfer_ts,
    t.amount
FROM logins AS l
JOIN transfers AS t
    ON l.user_id = t.user_id AND t.ts BETWEEN l.ts AND l.ts + INTERVAL '5' MINUTE
WHERE l.event_type = 'login_success' AND l.new_device AND t.amount > 1000;
