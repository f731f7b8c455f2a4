//! A Chatwoot-shaped data generator for the tests and the benchmark: one new account with three agents, an
//! Evolution API inbox (the source of a migration) with its people, conversations and everything hanging off them,
//! and WhatsApp Cloud, 360dialog and Twilio WhatsApp inboxes, the Cloud one already knowing some of the source's
//! people (the merges a migration has to make). Every table is filled by one set-based statement over
//! `generate_series`, all in one transaction, so 100,000 conversations with 1,000,000 messages take about a minute.
//!
//! The people are planned first in a temporary table, `gen_person` (one row per contact_inbox, with its contact,
//! contact_inbox and conversation ids drawn from Chatwoot's own sequences); each table is then filled from it.
//! Timestamps are fixed (from 2025-01-01) so that two runs give the same shape.

use sqlx::{PgConnection, PgPool};

/// Chatwoot's tables that the adapter works on, as its `db/schema.rb` declares them (see the file's header): the
/// stand-in for a live Chatwoot in the tests and the benchmark.
pub const SCHEMA: &str = include_str!("schema.sql");

/// Creates Chatwoot's tables in an empty database.
pub async fn create_schema(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(SCHEMA).execute(pool).await?;
    Ok(())
}

/// What to generate in one account. Besides the source inbox, the Cloud inbox gets `conversations / 10` people of
/// its own and 2 BSUID ones, the Twilio and 360dialog inboxes 3 people each: one conversation with 2 messages each.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Conversations in the source inbox (an Evolution API inbox): one person (contact, contact_inbox,
    /// conversation) each. At most 39,999,999 (person i's number is `+55 11 9 <60000000 + i>`).
    pub conversations: i64,
    /// Messages per source conversation (exactly: incoming and outgoing alternate, every 10th is an activity).
    pub messages_per_conversation: i64,
    /// Every `merge_every`-th source person also has a contact_inbox in the destination (Cloud) inbox: half of
    /// those through the same contact (shared contact: a contact_inbox merge), half through another contact whose
    /// phone is the same number without the Brazilian ninth digit (a contact merge). 0 = none.
    pub merge_every: i64,
    /// Every `lid_every`-th source contact is a LID (identifier `<15 digits>@lid`, no phone_number) and every
    /// `group_every`-th a group (`<18 digits>@g.us`): non-portable. 0 = none.
    pub lid_every: i64,
    /// See `lid_every`; a person that is both is a group.
    pub group_every: i64,
}

/// Ids of what was generated.
#[derive(Debug, Clone)]
pub struct Generated {
    pub account_id: i64,
    /// Source: `Channel::Api` with webhook_url `http://evolution:8080/chatwoot/webhook/<instance>`.
    pub evolution_inbox: i64,
    /// `Channel::Whatsapp` with provider `whatsapp_cloud`.
    pub cloud_inbox: i64,
    /// `Channel::Whatsapp` with provider `default` (360dialog).
    pub dialog_inbox: i64,
    /// `Channel::TwilioSms` with medium 1 (WhatsApp).
    pub twilio_inbox: i64,
    /// 3 agents, by id; users[0] and users[1] are inbox_members of the Evolution inbox, users[1] and users[2] of
    /// the Cloud inbox. users[0] answers the source conversations, users[1] the others.
    pub users: Vec<i64>,
}

/// Creates a new account and fills it as `spec` says, in one transaction.
pub async fn generate(pool: &PgPool, spec: &Spec) -> Result<Generated, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let account_id = account(&mut tx).await?;
    let users = users(&mut tx, account_id).await?;
    let g = Generated {
        account_id,
        evolution_inbox: evolution_inbox(&mut tx, account_id).await?,
        cloud_inbox: cloud_inbox(&mut tx, account_id).await?,
        dialog_inbox: dialog_inbox(&mut tx, account_id).await?,
        twilio_inbox: twilio_inbox(&mut tx, account_id).await?,
        users,
    };
    inbox_members(&mut tx, &g).await?;
    plan_people(&mut tx, &g, spec).await?;
    contacts(&mut tx, &g).await?;
    conversations(&mut tx, &g).await?;
    messages(&mut tx, &g).await?;
    attachments(&mut tx, &g).await?;
    reports(&mut tx, &g).await?;
    notes(&mut tx, &g).await?;
    labels(&mut tx).await?;
    csat(&mut tx, &g).await?;
    tx.commit().await?;
    Ok(g)
}

/// Chatwoot's trigger on accounts creates `conv_dpid_seq_<id>`, which numbers the account's conversations.
async fn account(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO accounts (name, created_at, updated_at) VALUES ('Generated', now(), now()) \
         RETURNING id::bigint",
    )
    .fetch_one(conn)
    .await
}

/// Three agents; uid and email name the account, as they are unique installation-wide.
async fn users(conn: &mut PgConnection, account: i64) -> Result<Vec<i64>, sqlx::Error> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO users (uid, email, name, display_name, confirmed_at, created_at, updated_at) \
         SELECT e, e, 'Agent ' || k, 'Agent ' || k, now(), now(), now() \
         FROM generate_series(1, 3) AS k, \
              LATERAL (SELECT 'agent' || k || '.account' || $1 || '@example.com' AS e) AS x \
         ORDER BY k RETURNING id::bigint",
    )
    .bind(account)
    .fetch_all(&mut *conn)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// The channel's identifier, HMAC token and webhook instance derive from the account id: they are unique.
async fn evolution_inbox(conn: &mut PgConnection, account: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "WITH ch AS ( \
           INSERT INTO channel_api (account_id, webhook_url, identifier, hmac_token, created_at, updated_at) \
           VALUES ($1, 'http://evolution:8080/chatwoot/webhook/generated-' || $1, 'generated-api-' || $1, \
                   'generated-hmac-' || $1, now(), now()) \
           RETURNING id) \
         INSERT INTO inboxes (account_id, channel_id, channel_type, name, created_at, updated_at) \
         SELECT $1, id, 'Channel::Api', 'Evolution', now(), now() FROM ch RETURNING id::bigint",
    )
    .bind(account)
    .fetch_one(conn)
    .await
}

/// A `Channel::Whatsapp` inbox; its phone number (unique installation-wide) is `+1<prefix><10000000 + account>`.
const WHATSAPP_INBOX: &str = "WITH ch AS ( \
       INSERT INTO channel_whatsapp (account_id, phone_number, provider, provider_config, created_at, updated_at) \
       VALUES ($1, '+1' || $2 || (10000000 + $1), $3, $4::jsonb, now(), now()) \
       RETURNING id) \
     INSERT INTO inboxes (account_id, channel_id, channel_type, name, created_at, updated_at) \
     SELECT $1, id, 'Channel::Whatsapp', $5, now(), now() FROM ch RETURNING id::bigint";

async fn cloud_inbox(conn: &mut PgConnection, account: i64) -> Result<i64, sqlx::Error> {
    let config = serde_json::json!({
        "api_key": format!("cloud-key-{account}"),
        "phone_number_id": (100_000_000_000_000 + account).to_string(),
        "business_account_id": (200_000_000_000_000 + account).to_string(),
        "webhook_verify_token": format!("verify-{account}"),
    });
    sqlx::query_scalar(WHATSAPP_INBOX)
        .bind(account)
        .bind("555")
        .bind("whatsapp_cloud")
        .bind(config.to_string())
        .bind("WhatsApp Cloud")
        .fetch_one(conn)
        .await
}

async fn dialog_inbox(conn: &mut PgConnection, account: i64) -> Result<i64, sqlx::Error> {
    let config = serde_json::json!({ "api_key": format!("dialog-key-{account}") });
    sqlx::query_scalar(WHATSAPP_INBOX)
        .bind(account)
        .bind("556")
        .bind("default")
        .bind(config.to_string())
        .bind("360dialog")
        .fetch_one(conn)
        .await
}

async fn twilio_inbox(conn: &mut PgConnection, account: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "WITH ch AS ( \
           INSERT INTO channel_twilio_sms (account_id, phone_number, medium, account_sid, auth_token, \
                                           created_at, updated_at) \
           VALUES ($1, 'whatsapp:+1557' || (10000000 + $1), 1, 'AC' || md5('account' || $1), 'secret', \
                   now(), now()) \
           RETURNING id) \
         INSERT INTO inboxes (account_id, channel_id, channel_type, name, created_at, updated_at) \
         SELECT $1, id, 'Channel::TwilioSms', 'Twilio WhatsApp', now(), now() FROM ch RETURNING id::bigint",
    )
    .bind(account)
    .fetch_one(conn)
    .await
}

/// users[1] is in both inboxes, users[0] and users[2] in one each: a migration meets both cases.
async fn inbox_members(conn: &mut PgConnection, g: &Generated) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO inbox_members (user_id, inbox_id, created_at, updated_at) \
         SELECT u, i, now(), now() FROM (VALUES ($1, $4), ($2, $4), ($2, $5), ($3, $5)) AS m(u, i)",
    )
    .bind(g.users[0])
    .bind(g.users[1])
    .bind(g.users[2])
    .bind(g.evolution_inbox)
    .bind(g.cloud_inbox)
    .execute(conn)
    .await?;
    Ok(())
}

/// One row per contact_inbox to create. `kind` is the inbox's ('evolution', 'cloud' for a merge's Cloud side,
/// 'cloud_only', 'bsuid', 'twilio', 'dialog'); `variant` says what an Evolution person is ('group', 'lid',
/// 'shared' or 'contact' for the two kinds of merge, NULL for a plain one) and is copied to its Cloud side.
/// The contact columns are used only where `new_contact` (a shared merge reuses the Evolution contact).
/// Dropped at commit: nothing of it stays in the database.
const PEOPLE: &str = "CREATE TEMP TABLE gen_person ( \
       i bigint NOT NULL, \
       kind text NOT NULL, \
       variant text, \
       inbox_id bigint NOT NULL, \
       contact_id bigint NOT NULL DEFAULT nextval('contacts_id_seq'), \
       new_contact boolean NOT NULL DEFAULT true, \
       name text, phone text, identifier text, email text, \
       ci_id bigint NOT NULL DEFAULT nextval('contact_inboxes_id_seq'), \
       source_id text NOT NULL, \
       conv_id bigint NOT NULL DEFAULT nextval('conversations_id_seq'), \
       messages bigint NOT NULL, \
       agent bigint NOT NULL, \
       at timestamp NOT NULL \
     ) ON COMMIT DROP";

/// Person i: `+55 11 9 <60000000 + i>` with the ninth digit, or a LID or group JID; Evolution gives its
/// contact_inboxes random UUIDs and keeps the JID in `identifier`.
const EVOLUTION_PEOPLE: &str = "INSERT INTO gen_person \
       (i, kind, variant, inbox_id, name, phone, identifier, source_id, messages, agent, at) \
     SELECT i, 'evolution', variant, $1, 'Contact ' || i, \
            CASE WHEN variant IN ('group', 'lid') THEN NULL ELSE '+' || digits END, \
            CASE variant WHEN 'group' THEN '120363' || lpad(i::text, 12, '0') || '@g.us' \
                         WHEN 'lid' THEN (100000000000000 + i) || '@lid' \
                         ELSE digits || '@s.whatsapp.net' END, \
            gen_random_uuid()::text, $3, $7, timestamp '2025-01-01' + i * interval '1 minute' \
     FROM generate_series(1, $2) AS i, \
          LATERAL (SELECT '55119' || (60000000 + i) AS digits, \
                          CASE WHEN i % nullif($6, 0) = 0 THEN 'group' \
                               WHEN i % nullif($5, 0) = 0 THEN 'lid' \
                               WHEN i % nullif($4, 0) = 0 \
                                 THEN CASE WHEN (i / $4) % 2 = 0 THEN 'shared' ELSE 'contact' END \
                          END AS variant) AS v \
     ORDER BY i";

/// The Cloud side of a merge: the same contact (source_id its digits), or a contact with the number without the
/// ninth digit, no identifier and an email (source_id those digits).
const CLOUD_MERGES: &str = "INSERT INTO gen_person \
       (i, kind, variant, inbox_id, contact_id, new_contact, name, phone, email, source_id, messages, agent, at) \
     SELECT i, 'cloud', variant, $1, \
            CASE variant WHEN 'shared' THEN contact_id ELSE nextval('contacts_id_seq') END, \
            variant = 'contact', 'Cloud contact ' || i, '+5511' || (60000000 + i), 'c' || i || '@example.com', \
            CASE variant WHEN 'shared' THEN '55119' ELSE '5511' END || (60000000 + i), \
            2, $2, at + interval '30 seconds' \
     FROM gen_person WHERE kind = 'evolution' AND variant IN ('shared', 'contact') ORDER BY i";

/// People of the other inboxes only, with numbers in other area codes than the source's: Cloud (digits), BSUID
/// (a Cloud identity without a phone), Twilio (`whatsapp:+<digits>`) and 360dialog (digits).
const OTHER_PEOPLE: &str = "INSERT INTO gen_person (i, kind, inbox_id, name, phone, source_id, messages, agent, at) \
     SELECT k, kind, inbox, label || ' ' || k, \
            CASE WHEN kind <> 'bsuid' THEN '+' || digits END, \
            CASE kind WHEN 'bsuid' THEN 'US.134912086553027419' || lpad(k::text, 2, '0') \
                      WHEN 'twilio' THEN 'whatsapp:+' || digits ELSE digits END, \
            2, $4, timestamp '2025-01-01' + k * interval '1 minute' + interval '40 seconds' \
     FROM (VALUES ('cloud_only', $1, 'Cloud only', '55219', $5 / 10), ('bsuid', $1, 'BSUID', '', 2), \
                  ('twilio', $2, 'Twilio', '55319', 3), ('dialog', $3, '360dialog', '55419', 3)) \
            AS e(kind, inbox, label, prefix, n), \
          generate_series(1, e.n) AS k, \
          LATERAL (SELECT e.prefix || (70000000 + k) AS digits) AS d \
     ORDER BY kind, k";

async fn plan_people(
    conn: &mut PgConnection,
    g: &Generated,
    spec: &Spec,
) -> Result<(), sqlx::Error> {
    sqlx::query(PEOPLE).execute(&mut *conn).await?;
    sqlx::query(EVOLUTION_PEOPLE)
        .bind(g.evolution_inbox)
        .bind(spec.conversations)
        .bind(spec.messages_per_conversation)
        .bind(spec.merge_every)
        .bind(spec.lid_every)
        .bind(spec.group_every)
        .bind(g.users[0])
        .execute(&mut *conn)
        .await?;
    sqlx::query(CLOUD_MERGES)
        .bind(g.cloud_inbox)
        .bind(g.users[1])
        .execute(&mut *conn)
        .await?;
    sqlx::query(OTHER_PEOPLE)
        .bind(g.cloud_inbox)
        .bind(g.twilio_inbox)
        .bind(g.dialog_inbox)
        .bind(g.users[1])
        .bind(spec.conversations)
        .execute(&mut *conn)
        .await?;
    // A temporary table has no statistics until analysed: the joins below need them.
    sqlx::query("ANALYZE gen_person").execute(conn).await?;
    Ok(())
}

/// Contacts, then their contact_inboxes, with the ids planned.
async fn contacts(conn: &mut PgConnection, g: &Generated) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contacts (id, account_id, name, email, phone_number, identifier, created_at, updated_at, \
                               last_activity_at) \
         SELECT contact_id, $1, name, email, phone, identifier, at, at, at + messages * interval '1 second' \
         FROM gen_person WHERE new_contact ORDER BY contact_id",
    )
    .bind(g.account_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO contact_inboxes (id, contact_id, inbox_id, source_id, created_at, updated_at) \
         SELECT ci_id, contact_id, inbox_id, source_id, at, at FROM gen_person ORDER BY ci_id",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One conversation per contact_inbox, status cycling open, resolved, pending; display_id comes from Chatwoot's
/// trigger. Every 13th source conversation is labelled 'lead' (see `labels`), which Chatwoot caches here too.
async fn conversations(conn: &mut PgConnection, g: &Generated) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversations (id, account_id, inbox_id, status, contact_id, contact_inbox_id, created_at, \
                                    updated_at, last_activity_at, cached_label_list) \
         SELECT conv_id, $1, inbox_id, (i - 1) % 3, contact_id, ci_id, at, last, last, \
                CASE WHEN kind = 'evolution' AND i % 13 = 0 THEN 'lead' END \
         FROM gen_person, LATERAL (SELECT at + messages * interval '1 second' AS last) AS l \
         ORDER BY conv_id",
    )
    .bind(g.account_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Message n of a conversation, a second after n - 1: every 10th an activity without sender, otherwise odd ones
/// incoming from the contact (with the provider's message id), even ones outgoing from the agent.
async fn messages(conn: &mut PgConnection, g: &Generated) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO messages (content, account_id, inbox_id, conversation_id, message_type, created_at, \
                               updated_at, status, source_id, sender_type, sender_id) \
         SELECT CASE t WHEN 0 THEN 'Message ' || n || ' from ' || p.name \
                       WHEN 1 THEN 'Reply ' || n || ' to ' || p.name \
                       ELSE 'Conversation was marked resolved by Agent' END, \
                $1, p.inbox_id, p.conv_id, t, p.at + n * interval '1 second', p.at + n * interval '1 second', 0, \
                CASE WHEN t = 0 THEN CASE p.kind WHEN 'evolution' THEN 'WAID:' WHEN 'twilio' THEN 'SM' \
                                      ELSE 'wamid.' END || p.conv_id || '-' || n END, \
                CASE t WHEN 0 THEN 'Contact' WHEN 1 THEN 'User' END, \
                CASE t WHEN 0 THEN p.contact_id WHEN 1 THEN p.agent END \
         FROM gen_person AS p, generate_series(1, p.messages) AS n, \
              LATERAL (SELECT CASE WHEN n % 10 = 0 THEN 2 WHEN n % 2 = 1 THEN 0 ELSE 1 END AS t) AS mt \
         ORDER BY p.conv_id, n",
    )
    .bind(g.account_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// One attachment on every 10th incoming message of the account: one per 20 messages.
async fn attachments(conn: &mut PgConnection, g: &Generated) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attachments (file_type, message_id, account_id, created_at, updated_at) \
         SELECT 0, id, account_id, created_at, created_at \
         FROM (SELECT id, account_id, created_at, row_number() OVER (ORDER BY id) AS nth \
               FROM messages WHERE account_id = $1 AND message_type = 0) AS m \
         WHERE nth % 10 = 0",
    )
    .bind(g.account_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Two reporting events per source conversation, and an SLA event on every 50th: rows that name the inbox.
async fn reports(conn: &mut PgConnection, g: &Generated) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reporting_events (name, value, value_in_business_hours, account_id, inbox_id, user_id, \
                                       conversation_id, created_at, updated_at, event_start_time, event_end_time) \
         SELECT e.name, e.value, e.value, $1, p.inbox_id, $2, p.conv_id, p.at, p.at, p.at, \
                p.at + e.value * interval '1 second' \
         FROM gen_person AS p, \
              LATERAL (VALUES ('conversation_opened', 0::float8), ('first_response', (60 + p.i % 600)::float8)) \
                AS e(name, value) \
         WHERE p.kind = 'evolution'",
    )
    .bind(g.account_id)
    .bind(g.users[0])
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO sla_events (applied_sla_id, sla_policy_id, conversation_id, account_id, inbox_id, event_type, \
                                 created_at, updated_at) \
         SELECT 1, 1, conv_id, $1, inbox_id, 0, at, at FROM gen_person WHERE kind = 'evolution' AND i % 50 = 0",
    )
    .bind(g.account_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A note on every 25th source contact, and on the source contact of every contact merge (notes to carry).
async fn notes(conn: &mut PgConnection, g: &Generated) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notes (content, account_id, contact_id, user_id, created_at, updated_at) \
         SELECT 'Note about ' || name, $1, contact_id, $2, at, at FROM gen_person \
         WHERE kind = 'evolution' AND (i % 25 = 0 OR variant = 'contact')",
    )
    .bind(g.account_id)
    .bind(g.users[0])
    .execute(conn)
    .await?;
    Ok(())
}

/// Labels 'vip' (every 7th source contact, and the Cloud contact of every contact merge, so that a merge meets a
/// label both sides have) and 'lead' (every 11th source contact, every 13th source conversation). Tags are
/// installation-wide: created once, their taggings_count recounted.
async fn labels(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tags (name) VALUES ('vip'), ('lead') ON CONFLICT (name) DO NOTHING")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO taggings (tag_id, taggable_type, taggable_id, context, created_at) \
         SELECT t.id, x.type, x.id, 'labels', x.at \
         FROM (SELECT 'vip' AS tag, 'Contact' AS type, contact_id AS id, at FROM gen_person \
                 WHERE kind = 'evolution' AND i % 7 = 0 \
               UNION ALL SELECT 'lead', 'Contact', contact_id, at FROM gen_person \
                 WHERE kind = 'evolution' AND i % 11 = 0 \
               UNION ALL SELECT 'vip', 'Contact', contact_id, at FROM gen_person \
                 WHERE kind = 'cloud' AND variant = 'contact' \
               UNION ALL SELECT 'lead', 'Conversation', conv_id, at FROM gen_person \
                 WHERE kind = 'evolution' AND i % 13 = 0) AS x \
         JOIN tags AS t ON t.name = x.tag",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE tags AS t SET taggings_count = (SELECT count(*) FROM taggings AS g WHERE g.tag_id = t.id) \
         WHERE t.name IN ('vip', 'lead')",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A CSAT response on every 30th source conversation, on its first outgoing message (responses are unique per
/// message); none where the conversation has no outgoing message.
async fn csat(conn: &mut PgConnection, g: &Generated) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO csat_survey_responses (account_id, conversation_id, message_id, rating, feedback_message, \
                                            contact_id, assigned_agent_id, created_at, updated_at) \
         SELECT $1, p.conv_id, m.id, 1 + (p.i / 30) % 5, 'Feedback ' || p.i, p.contact_id, $2, \
                m.created_at, m.created_at \
         FROM gen_person AS p, \
              LATERAL (SELECT id, created_at FROM messages \
                       WHERE conversation_id = p.conv_id AND message_type = 1 ORDER BY id LIMIT 1) AS m \
         WHERE p.kind = 'evolution' AND p.i % 30 = 0",
    )
    .bind(g.account_id)
    .bind(g.users[0])
    .execute(conn)
    .await?;
    Ok(())
}
