-- rule: rapid_activity
-- description: A user whose logins in one minute are 10 times their average per minute over
--   the hour ending with it (and at least 5): a 1-minute count joined with the 1-hour count
--   of the window ending at the same time.
-- severity: warning
-- owner: security

CREATE VIEW logins_per_minute AS
SELECT window_start, window_end, user_id, count(*) AS logins
FROM TUMBLE(logins, ts, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, user_id;

CREATE VIEW logins_per_hour AS
SELECT window_start, window_end, user_id, count(*) AS logins
FROM HOP(logins, ts, INTERVAL '1' MINUTE, INTERVAL '1' HOUR)
GROUP BY window_start, window_end, user_id;

CREATE SINK rapid_activity_alerts AS
SELECT
    m.window_start,
    m.window_end,
    m.user_id,
    m.logins,
    round(h.logins / 60.0, 2) AS hourly_average
FROM logins_per_minute AS m
JOIN logins_per_hour AS h ON m.user_id = h.user_id AND m.window_end = h.window_end
WHERE m.logins >= 5 AND m.logins > 10 * h.logins / 60.0;
