-- rule: city_events
-- description: Incidents per city and event type in 5-minute windows, with the severities
--   reported, for the windows holding a high or critical one. City reports come in late, so
--   the profiles' watermark trails by 10 minutes: a window is emitted 10 minutes after it
--   ends, and a report later than that is counted late.
-- severity: warning
-- owner: city-operations

CREATE SINK city_event_counts AS
SELECT
    window_start,
    window_end,
    city,
    event_type,
    count(*) AS events,
    array_agg(DISTINCT severity) AS severities
FROM TUMBLE(city_events, ts, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, city, event_type
HAVING count(*) FILTER (WHERE severity IN ('high', 'critical')) > 0;
