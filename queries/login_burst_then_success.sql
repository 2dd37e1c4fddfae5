-- rule: login_burst_then_success
-- description: Five or more failed logins by one user and then a successful one, all within
--   two minutes: a password guessed (an event pattern, MATCH_RECOGNIZE). Other events of the
--   user do not break the sequence; only login attempts are matched.
-- severity: critical
-- owner: security

CREATE VIEW login_attempts AS
SELECT *
FROM logins
WHERE event_type IN ('login_failed', 'login_success');

CREATE SINK login_burst_alerts AS
SELECT user_id, first_failure_ts, success_ts, failures, success_ip
FROM login_attempts MATCH_RECOGNIZE (
    PARTITION BY user_id
    ORDER BY ts
    MEASURES
        FIRST(F.ts) AS first_failure_ts,
        S.ts AS success_ts,
        COUNT(F.*) AS failures,
        S.ip AS success_ip
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (F{5,} S) WITHIN INTERVAL '2' MINUTE
    DEFINE
        F AS F.event_type = 'login_failed',
        S AS S.event_type = 'login_success'
);
