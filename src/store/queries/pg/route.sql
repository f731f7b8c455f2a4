-- Where the webhooks of the integrations in `routes` (a CTE the caller puts in front) go: the integration's own
-- inbox or, once an inbox migration of that inbox completed with `redirect_source` (default on), the newest
-- such migration's destination (until a later migration brings the inbox's conversations back into it); with that inbox's channel, the integration's business number and the account's
-- ninth-digit setting, so ingestion needs no further query.
SELECT r.integration_id, r.account_id, r.inbox_id AS origin_inbox_id, r.target AS inbox_id,
       ib.channel_type, r.provider, r.enabled, r.expires_at, r.secrets_ciphertext,
       (SELECT g.phone_number_id FROM integrations g WHERE g.id = r.integration_id) AS phone_number_id,
       (SELECT g.instance_name FROM integrations g WHERE g.id = r.integration_id) AS instance_name,
       COALESCE((SELECT a.merge_brazil_ninth_digit FROM accounts a WHERE a.id = r.account_id), TRUE)
           AS merge_brazil_ninth_digit
FROM (
    SELECT routes.*, COALESCE((
        SELECT m.destination_inbox_id FROM inbox_migrations m
        WHERE m.source_inbox_id = routes.inbox_id AND m.status = 'completed'
          AND COALESCE(m.options->>'redirect_source', 'true') = 'true'
          -- Migrating back into this inbox later ends the redirect.
          AND NOT EXISTS (
              SELECT 1 FROM inbox_migrations back
              WHERE back.destination_inbox_id = routes.inbox_id AND back.status = 'completed'
                AND (back.completed_at > m.completed_at OR (back.completed_at = m.completed_at AND back.id > m.id))
          )
        ORDER BY m.completed_at DESC, m.id DESC LIMIT 1
    ), routes.inbox_id) AS target
    FROM routes
) r
LEFT JOIN inboxes ib ON ib.id = r.target
