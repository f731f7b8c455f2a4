-- Expands each conversation's plan into its messages in one set-based statement (the data generator).
-- The plan marker becomes VALUES (account_id, conversation_id, messages, started_at, gap_seconds, source_prefix, channel), …
-- The created-at marker is each dialect's `started_at + gap_seconds * (i + 1)` (SEED_CREATED_AT).
-- Messages alternate incoming/outgoing, `gap_seconds` apart; provider ids are unique per conversation and index.
WITH RECURSIVE
    n (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 49),
    plan (account_id, conversation_id, messages, started_at, gap_seconds, source_prefix, channel) AS ({plan}),
    texts (k, incoming, outgoing) AS (VALUES
        (0, 'Olá, gostaria de agendar uma consulta', 'Olá! Claro, qual o melhor dia para você?'),
        (1, 'Qual o horário de funcionamento?', 'Atendemos de segunda a sexta, das 8h às 18h.'),
        (2, 'Vocês atendem convênio?', 'Sim, atendemos os principais convênios.'),
        (3, 'Bom dia! Preciso remarcar meu horário', 'Horário remarcado com sucesso ✅'),
        (4, 'Quanto custa uma limpeza?', 'A limpeza custa R$ 150,00.'),
        (5, 'Pode ser na quinta às 14h?', 'Confirmado para quinta às 14h.'),
        (6, 'Segue o comprovante', 'Recebido, obrigado!'),
        (7, 'Hi, do you speak English?', 'Yes, of course! How can we help?'))
INSERT INTO messages (account_id, conversation_id, message_type, content, source_id, dedupe_key, status,
                      created_at, updated_at)
SELECT p.account_id,
       p.conversation_id,
       CASE WHEN n.i % 2 = 0 THEN 'incoming' ELSE 'outgoing' END,
       CASE WHEN n.i % 2 = 0 THEN t.incoming ELSE t.outgoing END,
       p.source_prefix || p.conversation_id || 'x' || n.i,
       p.account_id || ':' || p.channel || ':' || p.source_prefix || p.conversation_id || 'x' || n.i,
       CASE WHEN n.i % 2 = 0 OR n.i % 3 = 1 THEN 'read' WHEN n.i % 3 = 0 THEN 'delivered' ELSE 'sent' END,
       {created_at},
       {created_at}
FROM plan p
JOIN n ON n.i < p.messages
JOIN texts t ON t.k = (p.conversation_id * 7 + n.i * 3) % 8
ORDER BY p.conversation_id, n.i
