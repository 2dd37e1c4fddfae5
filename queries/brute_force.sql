-- rule: brute_force
-- description: 5 or more failed logins by one user within a minute, checked every 10 s
--   (1-minute windows hopping by 10 s), with the distinct addresses they came from.
-- severity: critical
-- owner: security

CREATE SINK brute_force_alerts AS
SELECT
    window_start,
    window_end,
    user_id,
    count(*) AS failed_logins,
    array_agg(DISTINCT ip) AS ips
FROM HOP(logins, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)
WHERE event_type = 'login_failed'
GROUP BY window_start, window_end, user_id
HAVING count(*) >= 5;
