//! Legacy data sets shaped like the real system's (`reference/legacy-source.md`): for the demo's export
//! directory, the benchmark, and tests — written as an export directory or loaded into DynamoDB.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::envelope::ConfigKey;
use super::source::{ConfigsAnswer, LegacyChannel, LegacyMedia, LegacyMessage, LegacyThread};

/// Where the demo keeps the config envelope key (read when `FERRY_LEGACY_CONFIG_KEY` is unset).
pub const CONFIG_KEY_FILE: &str = "legacy-config.key";
/// The demo's export directory under the data directory (used when no legacy source is configured).
pub const DEMO_EXPORT_DIR: &str = "legacy-export";

/// The two legacy accounts of `ferry serve --demo`: (legacy_ref, name, threads, messages per thread).
pub const DEMO_ACCOUNTS: [(&str, &str, usize, usize); 2] = [
    ("padaria-estrela", "Padaria Estrela", 400, 25),
    ("oficina-rapida", "Oficina Rápida", 150, 12),
];

/// Writes the demo's legacy export and its config key into `data_dir`, once.
pub fn demo_export(data_dir: &Path) -> std::io::Result<()> {
    let dir = data_dir.join(DEMO_EXPORT_DIR);
    if dir.join("accounts.json").exists() {
        return Ok(());
    }
    let key_file = data_dir.join(CONFIG_KEY_FILE);
    let key = match std::fs::read_to_string(&key_file) {
        Ok(key) => key,
        Err(_) => {
            let key = super::envelope::generate_key();
            std::fs::create_dir_all(data_dir)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(&key_file)?, key.as_bytes())?;
            key
        }
    };
    let key = ConfigKey::parse(&key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let now = chrono::Utc::now().timestamp();
    let accounts: Vec<_> = DEMO_ACCOUNTS
        .iter()
        .map(|(legacy_ref, name, threads, messages)| {
            account(
                &AccountSpec {
                    legacy_ref: (*legacy_ref).into(),
                    name: (*name).into(),
                    threads: *threads,
                    messages_per_thread: *messages,
                    media_every: Some(15),
                    // A few hours apart: the newest ones are in the recent window, the oldest months back.
                    thread_spacing_seconds: 6 * 3600,
                },
                &key,
                now,
                "file://media/",
            )
        })
        .collect();
    write_export(&dir, &accounts)
}

#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub legacy_ref: String,
    pub name: String,
    pub threads: usize,
    pub messages_per_thread: usize,
    /// Every n-th message carries a media file (None: no media).
    pub media_every: Option<usize>,
    /// Seconds between threads' last activity, newest first from `now` (600: 10,000 threads span 70 days).
    pub thread_spacing_seconds: i64,
}

#[derive(Debug, Clone)]
pub struct LegacyAccount {
    pub legacy_ref: String,
    pub name: String,
    pub channels: ConfigsAnswer,
    pub threads: Vec<LegacyThread>,
    /// By thread id, ordered by `sk`.
    pub messages: BTreeMap<String, Vec<LegacyMessage>>,
    /// Media files by name (`media/<name>` in an export directory).
    pub media: BTreeMap<String, Vec<u8>>,
}

impl LegacyAccount {
    pub fn message_count(&self) -> usize {
        self.messages.values().map(Vec::len).sum()
    }
}

/// Evolution and WhatsApp Cloud channels with realistic settings, threads alternating between them, messages
/// spaced back in time from each thread's last activity. `media_url` prefixes media file names
/// (`file://media/` for an export directory, the media server's URL for DynamoDB).
pub fn account(
    spec: &AccountSpec,
    key: &ConfigKey,
    now_secs: i64,
    media_url: &str,
) -> LegacyAccount {
    let r = &spec.legacy_ref;
    let channels = vec![
        (
            format!("{r}-evolution"),
            "evolution",
            format!("{} (Evolution)", spec.name),
            Some("+5511955550001".to_owned()),
            json!({"instance_name": format!("{r}-principal"), "api_url": "http://127.0.0.1:8080", "api_key": "evo-key"}),
        ),
        (
            format!("{r}-cloud"),
            "whatsapp_cloud",
            format!("{} (WhatsApp Cloud)", spec.name),
            Some("+5511955550002".to_owned()),
            json!({"phone_number_id": "109876500000009", "access_token": "EAAG-demo", "app_secret": "app-secret"}),
        ),
    ];
    let channels = ConfigsAnswer {
        account_id: r.clone(),
        channels: channels
            .into_iter()
            .map(|(id, kind, name, phone, config)| LegacyChannel {
                config: key.seal(&id, &config),
                channel_id: id,
                kind: kind.into(),
                name,
                phone_number: phone,
            })
            .collect(),
    };
    let first_names = [
        "Ana", "Bruno", "Carla", "Diego", "Elisa", "Fábio", "Gabi", "Hugo", "Iara", "João",
    ];
    let lines = [
        "Olá! Vocês abrem amanhã?",
        "Sim, das 8h às 18h.",
        "Qual o prazo de entrega?",
        "Chega em dois dias úteis.",
        "Obrigado!",
        "Pode me mandar o orçamento?",
        "Segue em anexo.",
        "Perfeito, fechado.",
    ];
    let mut threads = Vec::with_capacity(spec.threads);
    let mut messages = BTreeMap::new();
    let mut media = BTreeMap::new();
    for i in 0..spec.threads {
        let thread_id = format!("{r}-t{i:06}");
        let last = now_secs - spec.thread_spacing_seconds * i as i64;
        threads.push(LegacyThread {
            account_id: r.clone(),
            thread_id: thread_id.clone(),
            channel_id: channels.channels[i % 2].channel_id.clone(),
            contact_wa_id: format!("55119{:08}", 10_000_000 + i),
            contact_name: Some(format!("{} {}", first_names[i % first_names.len()], i)),
            last_message_at: last,
            status: if i % 3 == 0 { "resolved" } else { "open" }.into(),
            starred: i % 7 == 0,
        });
        let n = spec.messages_per_thread;
        let list: Vec<LegacyMessage> = (0..n)
            .map(|j| {
                let sent_at = (last - 120 * (n - 1 - j) as i64) * 1000 + j as i64;
                let message_id = format!("{thread_id}-m{j:05}");
                let file = spec
                    .media_every
                    .filter(|every| j % every == every - 1)
                    .map(|_| {
                        let name = format!("{thread_id}-{j}.jpg");
                        media.insert(name.clone(), format!("JPEG {thread_id} {j}").into_bytes());
                        LegacyMedia {
                            url: format!("{media_url}{name}"),
                            mime_type: Some("image/jpeg".into()),
                            filename: Some(format!("foto-{j}.jpg")),
                        }
                    });
                LegacyMessage {
                    thread_id: thread_id.clone(),
                    sk: LegacyMessage::sort_key(sent_at, &message_id),
                    message_id,
                    sent_at,
                    direction: if j % 2 == 0 { "in" } else { "out" }.into(),
                    body: Some(lines[(i + j) % lines.len()].into()),
                    media: file.into_iter().collect(),
                    status: Some(if j % 2 == 0 { "delivered" } else { "read" }.into()),
                    starred: j % 11 == 5,
                    external_id: None,
                }
            })
            .collect();
        messages.insert(thread_id, list);
    }
    LegacyAccount {
        legacy_ref: r.clone(),
        name: spec.name.clone(),
        channels,
        threads,
        messages,
        media,
    }
}

/// Writes (or adds to) an export directory.
pub fn write_export(dir: &Path, accounts: &[LegacyAccount]) -> std::io::Result<()> {
    use std::io::Write;
    for sub in ["channels", "threads", "messages", "media"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let index = dir.join("accounts.json");
    let mut listed: Vec<serde_json::Value> = std::fs::read_to_string(&index)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    for a in accounts {
        listed.retain(|l| l["account_id"] != a.legacy_ref.as_str());
        listed.push(json!({"account_id": a.legacy_ref, "name": a.name}));
        std::fs::write(
            dir.join("channels").join(format!("{}.json", a.legacy_ref)),
            serde_json::to_vec_pretty(&a.channels)?,
        )?;
        let mut threads = std::io::BufWriter::new(std::fs::File::create(
            dir.join("threads").join(format!("{}.jsonl", a.legacy_ref)),
        )?);
        for t in &a.threads {
            serde_json::to_writer(&mut threads, t)?;
            threads.write_all(b"\n")?;
        }
        threads.flush()?;
        for (thread_id, list) in &a.messages {
            let mut out = std::io::BufWriter::new(std::fs::File::create(
                dir.join("messages").join(format!("{thread_id}.jsonl")),
            )?);
            for m in list {
                serde_json::to_writer(&mut out, m)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        for (name, bytes) in &a.media {
            std::fs::write(dir.join("media").join(name), bytes)?;
        }
    }
    std::fs::write(index, serde_json::to_vec_pretty(&listed)?)
}

/// Loads accounts' threads and messages into DynamoDB tables (created if `create`).
pub async fn load_dynamodb(
    dynamo: &ferry_legacy_dynamodb::LegacyDynamo,
    accounts: &[LegacyAccount],
    create: bool,
) -> Result<(), ferry_legacy_dynamodb::Error> {
    if create {
        dynamo.create_tables().await?;
    }
    for a in accounts {
        let threads: Vec<_> = a
            .threads
            .iter()
            .map(|t| serde_json::to_value(t).expect("thread"))
            .collect();
        dynamo.put_threads(&threads).await?;
        let messages: Vec<_> = a
            .messages
            .values()
            .flatten()
            .map(|m| serde_json::to_value(m).expect("message"))
            .collect();
        dynamo.put_messages(&messages).await?;
    }
    Ok(())
}
