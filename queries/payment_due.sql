-- rule: payment_due
-- description: Per account, outstanding = all dues - all payments. Alerts while the
--   outstanding amount is above 150; the alert is updated as it changes and retracted when
--   it drops back. Only the account an event touches is recomputed.
-- severity: warning
-- owner: billing

CREATE VIEW ledger AS
SELECT account_id, amount AS due, 0.0 AS paid FROM dues
UNION ALL
SELECT account_id, 0.0 AS due, amount AS paid FROM payments;

CREATE SINK payment_due_alerts AS
SELECT account_id, sum(due) - sum(paid) AS outstanding
FROM ledger
GROUP BY account_id
HAVING sum(due) - sum(paid) > 150;
