//! The data generator shared by the demo and the benchmarks: a realistic account of a given size.
//!
//! Shape: an Evolution inbox with `conversations` conversations (the usual migration source); a WhatsApp Cloud
//! inbox on the same business number holding a `merge_ratio` share of the Evolution contacts again, as separate
//! contacts in Cloud's `wa_id` format (some Brazilian numbers without the ninth digit, as Meta sends them) plus
//! contacts of its own; a 360dialog and a Twilio WhatsApp inbox; a web-widget inbox (not WhatsApp-like).
//! Conversations carry 1–50 messages (skewed towards few), incoming and outgoing; about 10% carry attachments,
//! small real files in the attachment store. Legacy `evolution_instances` (one in `error`, one whose
//! organization maps to no account) and `whatsapp_business_configs` rows complete the picture.
//!
//! Rows are written in self-contained batches of a few hundred contacts (`Store::seed_batch`), so memory stays
//! flat and each batch commits whole. The output is deterministic for a given `seed`.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

use crate::domain::{ChannelType, WhatsAppIdentity};
use crate::services::{CreateInbox, Ferry, ServiceError};
use crate::store::seed::*;

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub account_name: String,
    /// Conversations of the Evolution inbox; the other inboxes are sized relative to it.
    pub conversations: u64,
    /// Share of Evolution contacts that also exist in the Cloud inbox (0.0–1.0).
    pub merge_ratio: f64,
    pub seed: u64,
    /// Every conversation gets exactly this many messages (1–50) instead of the skewed default.
    pub messages_per_conversation: Option<i64>,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self {
            account_name: "Clínica Sorriso".into(),
            conversations: 300,
            merge_ratio: 0.2,
            seed: 42,
            messages_per_conversation: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub account_id: i64,
    pub inboxes: Vec<SeededInbox>,
    pub contacts: u64,
    pub shared_contacts: u64,
    pub conversations: u64,
    pub messages: u64,
    pub attachments: u64,
    pub legacy_evolution_instances: u64,
    pub legacy_business_configs: u64,
    pub seconds: f64,
    pub messages_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeededInbox {
    pub id: i64,
    pub name: String,
    pub channel_type: ChannelType,
    pub conversations: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("merge ratio must be between 0 and 1, got {0}")]
    MergeRatio(f64),
    #[error("messages per conversation must be between 1 and 50")]
    MessagesPerConversation,
    #[error("conversations must be between 1 and 10,000,000, got {0}")]
    Size(u64),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot write sample attachments: {0}")]
    Io(#[from] std::io::Error),
}

const CONTACTS_PER_BATCH: usize = 400;

struct InboxPlan {
    id: i64,
    channel: ChannelType,
    /// Exclusive conversations still to generate (beyond shared contacts' ones).
    target: u64,
    made: u64,
}

pub async fn seed_account(ferry: &Ferry, opts: &SeedOptions) -> Result<SeedReport, SeedError> {
    if !(0.0..=1.0).contains(&opts.merge_ratio) || opts.merge_ratio.is_nan() {
        return Err(SeedError::MergeRatio(opts.merge_ratio));
    }
    if opts
        .messages_per_conversation
        .is_some_and(|m| !(1..=50).contains(&m))
    {
        return Err(SeedError::MessagesPerConversation);
    }
    if !(1..=10_000_000).contains(&opts.conversations) {
        return Err(SeedError::Size(opts.conversations));
    }
    let started = Instant::now();
    let account = ferry.create_account(&opts.account_name, None).await?;
    let n = opts.conversations;
    let specs: [(&str, ChannelType, Option<&str>, u64); 5] = [
        (
            "WhatsApp Principal (Evolution)",
            ChannelType::Evolution,
            Some("+551140028922"),
            n,
        ),
        (
            "WhatsApp Oficial (Cloud API)",
            ChannelType::WhatsappCloud,
            Some("+551140028922"),
            n / 4,
        ),
        (
            "WhatsApp Filial Rio (360dialog)",
            ChannelType::Dialog360,
            Some("+552130034000"),
            n / 20,
        ),
        (
            "WhatsApp EUA (Twilio)",
            ChannelType::TwilioWhatsapp,
            Some("+14155550100"),
            n / 10,
        ),
        ("Chat do site", ChannelType::WebWidget, None, n / 20),
    ];
    let mut plans = Vec::new();
    for (name, channel, phone, target) in specs {
        let inbox = ferry
            .create_inbox(
                CreateInbox {
                    account_id: account.id,
                    name: name.into(),
                    channel_type: channel,
                    phone_number: phone.map(str::to_owned),
                    provider_config: Some(sample_provider_config(channel)),
                    lock_to_single_conversation: channel == ChannelType::WhatsappCloud,
                },
                None,
            )
            .await?;
        plans.push(InboxPlan {
            id: inbox.id,
            channel,
            target,
            made: 0,
        });
    }
    let samples = write_sample_blobs(ferry).await?;
    let mut g = Generator {
        rng: StdRng::seed_from_u64(opts.seed ^ account.id as u64),
        messages_per_conversation: opts.messages_per_conversation,
        account_id: account.id,
        phone_counter: opts.seed.wrapping_mul(7919) % 40_000_000,
        samples,
        base_time: Utc::now() - Duration::days(180),
        totals: Totals::default(),
    };

    // Evolution contacts in batches, each with its Cloud twin when shared; then the other inboxes' own contacts.
    let (evolution, rest) = plans.split_first_mut().expect("five inboxes");
    let cloud = &mut rest[0];
    while evolution.made < evolution.target {
        let mut batch = g.batch();
        for _ in 0..CONTACTS_PER_BATCH {
            if evolution.made >= evolution.target {
                break;
            }
            let identity = g.next_identity(true);
            let contact = g.contact(&mut batch, &identity);
            evolution.made += g.conversations_for(
                &mut batch,
                contact,
                &identity,
                evolution,
                evolution.target - evolution.made,
            );
            if g.rng.gen_bool(opts.merge_ratio) && !identity.is_lid() {
                // The same person reached the Cloud number too, as a contact of its own, in Cloud's format —
                // often without the Brazilian ninth digit.
                let twin_identity = if g.rng.gen_bool(0.4) {
                    drop_ninth_digit(&identity)
                } else {
                    identity.clone()
                };
                let twin = g.contact(&mut batch, &twin_identity);
                cloud.made += g.conversations_for(&mut batch, twin, &twin_identity, cloud, 2);
                g.totals.shared += 1;
            }
        }
        g.flush(ferry, batch).await?;
    }
    for plan in rest.iter_mut() {
        while plan.made < plan.target {
            let mut batch = g.batch();
            for _ in 0..CONTACTS_PER_BATCH {
                if plan.made >= plan.target {
                    break;
                }
                let identity = g.next_identity(false);
                let contact = g.contact(&mut batch, &identity);
                plan.made += g.conversations_for(
                    &mut batch,
                    contact,
                    &identity,
                    plan,
                    plan.target - plan.made,
                );
            }
            g.flush(ferry, batch).await?;
        }
    }

    let (instances, configs) = seed_legacy(ferry, account.id).await?;
    let seconds = started.elapsed().as_secs_f64();
    let inboxes = ferry.store.list_inboxes(account.id).await?;
    Ok(SeedReport {
        account_id: account.id,
        inboxes: inboxes
            .iter()
            .map(|i| SeededInbox {
                id: i.id,
                name: i.name.clone(),
                channel_type: i.channel,
                conversations: i.conversations_count as u64,
            })
            .collect(),
        contacts: g.totals.contacts,
        shared_contacts: g.totals.shared,
        conversations: g.totals.conversations,
        messages: g.totals.messages,
        attachments: g.totals.attachments,
        legacy_evolution_instances: instances,
        legacy_business_configs: configs,
        seconds,
        messages_per_second: g.totals.messages as f64 / seconds.max(1e-9),
    })
}

#[derive(Default)]
struct Totals {
    contacts: u64,
    shared: u64,
    conversations: u64,
    messages: u64,
    attachments: u64,
}

#[derive(Clone)]
struct SampleBlob {
    file_type: &'static str,
    content_type: &'static str,
    file_name: &'static str,
    storage_key: String,
    checksum: String,
    byte_size: i64,
}

struct Generator {
    rng: StdRng,
    messages_per_conversation: Option<i64>,
    account_id: i64,
    phone_counter: u64,
    samples: Vec<SampleBlob>,
    base_time: DateTime<Utc>,
    totals: Totals,
}

impl Generator {
    fn batch(&self) -> SeedBatch {
        SeedBatch {
            account_id: self.account_id,
            ..SeedBatch::default()
        }
    }

    /// Unique Brazilian mobile numbers (`55 DD 9XXXX XXXX`), and now and then a LID-only Evolution sender.
    fn next_identity(&mut self, allow_lid: bool) -> WhatsAppIdentity {
        self.phone_counter += 1;
        if allow_lid && self.rng.gen_ratio(1, 50) {
            return WhatsAppIdentity::parse(&format!(
                "{}@lid",
                100_000_000_000_000 + self.phone_counter
            ))
            .expect("lid");
        }
        let areas = [11, 21, 31, 41, 51, 61, 71, 81, 85, 19];
        let area = areas[(self.phone_counter % areas.len() as u64) as usize];
        let subscriber = 60_000_000 + (self.phone_counter * 7_919) % 40_000_000;
        WhatsAppIdentity::parse(&format!("55{area}9{subscriber:08}")).expect("valid phone")
    }

    fn contact(&mut self, batch: &mut SeedBatch, identity: &WhatsAppIdentity) -> usize {
        let first = FIRST_NAMES[self.rng.gen_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[self.rng.gen_range(0..LAST_NAMES.len())];
        let with_email = self.rng.gen_bool(0.3);
        let index = batch.contacts.len();
        let email = with_email.then(|| {
            format!(
                "{}.{}.{}@example.com",
                first.to_lowercase(),
                last.to_lowercase(),
                self.totals.contacts + 1
            )
        });
        let mut attrs = serde_json::Map::new();
        if self.rng.gen_bool(0.5) {
            attrs.insert(
                "city".into(),
                json!(CITIES[self.rng.gen_range(0..CITIES.len())]),
            );
        }
        if self.rng.gen_bool(0.2) {
            attrs.insert(
                "plan".into(),
                json!(["basic", "premium", "family"][self.rng.gen_range(0..3)]),
            );
        }
        batch.contacts.push(SeedContact {
            name: format!("{first} {last}"),
            phone_number: identity.e164(),
            email,
            custom_attributes: serde_json::Value::Object(attrs),
            created_at: self.base_time + Duration::minutes(self.rng.gen_range(0..60 * 24 * 30)),
        });
        if self.rng.gen_bool(0.2) {
            batch
                .contact_labels
                .push((index, LABELS[self.rng.gen_range(0..LABELS.len())].into()));
        }
        if self.rng.gen_bool(0.05) {
            batch
                .contact_notes
                .push((index, "Prefere contato pela manhã.".into()));
        }
        self.totals.contacts += 1;
        index
    }

    /// One conversation, sometimes two (an old resolved one and a newer one), at most `room`.
    fn conversations_for(
        &mut self,
        batch: &mut SeedBatch,
        contact: usize,
        identity: &WhatsAppIdentity,
        inbox: &InboxPlan,
        room: u64,
    ) -> u64 {
        let source_id = match inbox.channel {
            ChannelType::WebWidget => format!("web-{:016x}", self.rng.r#gen::<u64>()),
            c => identity
                .to_source_id(c)
                .unwrap_or_else(|_| identity.canonical()),
        };
        let whatsapp = inbox.channel.is_whatsapp_like();
        let wa_identity = whatsapp.then(|| identity.canonical());
        let wa_key = whatsapp.then(|| identity.match_key(true));
        let contact_inbox = batch.contact_inboxes.len();
        batch.contact_inboxes.push(SeedContactInbox {
            contact,
            inbox_id: inbox.id,
            source_id,
            wa_identity,
            wa_key,
        });
        let count = if room > 1 && self.rng.gen_bool(0.15) {
            2
        } else {
            1
        };
        for k in 0..count {
            self.conversation(batch, contact, contact_inbox, inbox, k + 1 == count);
        }
        count
    }

    fn conversation(
        &mut self,
        batch: &mut SeedBatch,
        contact: usize,
        contact_inbox: usize,
        inbox: &InboxPlan,
        latest: bool,
    ) {
        let conversation = batch.conversations.len();
        let created_at = self.base_time + Duration::minutes(self.rng.gen_range(0..60 * 24 * 170));
        // Skewed towards short conversations: 1 + 49·u^4.4 has a mean near 10.
        let skewed = 1 + (49.0 * self.rng.r#gen::<f64>().powf(4.4)) as i64;
        let messages = self.messages_per_conversation.unwrap_or(skewed);
        let gap_seconds = self.rng.gen_range(20..4 * 3600);
        let at = created_at + Duration::seconds(gap_seconds * messages);
        let attachment = self.rng.gen_bool(0.1).then(|| {
            let s = &self.samples[self.rng.gen_range(0..self.samples.len())];
            SeedAttachment {
                file_type: s.file_type,
                content_type: s.content_type,
                file_name: s.file_name.to_owned(),
                byte_size: s.byte_size,
                storage_key: s.storage_key.clone(),
                checksum: s.checksum.clone(),
            }
        });
        self.totals.attachments += attachment.is_some() as u64;
        self.totals.messages += messages as u64;
        self.totals.conversations += 1;
        let status = if latest && self.rng.gen_bool(0.35) {
            "open"
        } else if latest && self.rng.gen_bool(0.1) {
            "pending"
        } else {
            "resolved"
        };
        batch.conversations.push(SeedConversation {
            inbox_id: inbox.id,
            contact,
            contact_inbox,
            display_id: 0,
            status,
            created_at,
            last_activity_at: at,
            messages,
            gap_seconds,
            source_prefix: message_id_prefix(inbox.channel),
            channel: inbox.channel.as_str(),
            attachment,
        });
        batch.reporting_events.push(SeedReportingEvent {
            conversation,
            name: "first_response",
            value: self.rng.gen_range(30.0..7200.0),
            created_at,
        });
        if status == "resolved" {
            let seconds = (at - created_at).num_seconds() as f64;
            batch.reporting_events.push(SeedReportingEvent {
                conversation,
                name: "conversation_resolved",
                value: seconds,
                created_at: at,
            });
        }
    }

    async fn flush(&mut self, ferry: &Ferry, mut batch: SeedBatch) -> Result<(), SeedError> {
        if batch.conversations.is_empty() {
            return Ok(());
        }
        let first = ferry
            .store
            .reserve_display_ids(self.account_id, batch.conversations.len() as i64)
            .await?;
        for (i, c) in batch.conversations.iter_mut().enumerate() {
            c.display_id = first + i as i64;
        }
        ferry.store.seed_batch(&batch).await?;
        Ok(())
    }
}

/// How each provider's message ids begin (Baileys `3EB0…`, Meta `wamid.…`, Twilio `SM…`).
fn message_id_prefix(channel: ChannelType) -> Option<&'static str> {
    match channel {
        ChannelType::Evolution => Some("3EB0"),
        ChannelType::WhatsappCloud | ChannelType::Dialog360 => Some("wamid.HBgN"),
        ChannelType::TwilioWhatsapp => Some("SM"),
        _ => None,
    }
}

fn drop_ninth_digit(identity: &WhatsAppIdentity) -> WhatsAppIdentity {
    let key = identity.match_key(true);
    WhatsAppIdentity::parse(&key).unwrap_or_else(|_| identity.clone())
}

fn sample_provider_config(channel: ChannelType) -> serde_json::Value {
    match channel {
        ChannelType::Evolution => {
            json!({"base_url": "http://127.0.0.1:8080", "api_key": "demo-evolution-api-key-0001"})
        }
        ChannelType::WhatsappCloud => {
            json!({"phone_number_id": "109876543210987", "access_token": "EAAG-demo-access-token-0001", "app_secret": "demo-app-secret-0001"})
        }
        ChannelType::Dialog360 => json!({"api_key": "demo-360dialog-key-0001"}),
        ChannelType::TwilioWhatsapp => {
            json!({"account_sid": "AC00000000000000000000000000000001", "auth_token": "demo-twilio-auth-token-0001"})
        }
        _ => json!({"widget_color": "#1f93ff"}),
    }
}

/// A handful of small, real files (an SVG image, a WAV tone, a PDF, a text receipt) in the attachment store.
async fn write_sample_blobs(ferry: &Ferry) -> Result<Vec<SampleBlob>, SeedError> {
    let mut out = Vec::new();
    for variant in 0..4u32 {
        let hue = variant * 90;
        let svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\"><rect width=\"64\" height=\"64\" \
             fill=\"hsl({hue},70%,60%)\"/><circle cx=\"32\" cy=\"32\" r=\"16\" fill=\"white\"/></svg>"
        );
        let files: [(&str, &str, &str, Vec<u8>); 4] = [
            ("image", "image/svg+xml", "foto.svg", svg.into_bytes()),
            (
                "audio",
                "audio/wav",
                "audio.wav",
                wav_tone(440 + variant * 110),
            ),
            (
                "file",
                "application/pdf",
                "documento.pdf",
                tiny_pdf(&format!("Recibo {}", variant + 1)),
            ),
            (
                "file",
                "text/plain",
                "recibo.txt",
                format!(
                    "Recibo nº {}\nValor: R$ {},00\n",
                    1000 + variant,
                    150 + variant * 25
                )
                .into_bytes(),
            ),
        ];
        for (file_type, content_type, file_name, bytes) in files {
            let blob = ferry.attachments.put(&bytes).await?;
            out.push(SampleBlob {
                file_type,
                content_type,
                file_name,
                storage_key: blob.storage_key,
                checksum: blob.checksum,
                byte_size: blob.byte_size,
            });
        }
    }
    Ok(out)
}

/// 0.2 s of a sine tone, 8 kHz mono 8-bit PCM.
fn wav_tone(frequency: u32) -> Vec<u8> {
    let rate = 8000u32;
    let samples: Vec<u8> = (0..rate / 5)
        .map(|i| {
            (128.0
                + 100.0
                    * (2.0 * std::f64::consts::PI * frequency as f64 * i as f64 / rate as f64)
                        .sin()) as u8
        })
        .collect();
    let mut w = Vec::with_capacity(44 + samples.len());
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    w.extend_from_slice(&samples);
    w
}

/// A one-page PDF with a line of text, with a correct cross-reference table.
fn tiny_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 18 Tf 40 100 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

async fn seed_legacy(ferry: &Ferry, account_id: i64) -> Result<(u64, u64), SeedError> {
    let org = format!("org-{account_id}");
    ferry
        .store
        .insert_organization(&org, account_id, "Clínica Sorriso")
        .await?;
    let instances = [
        (
            format!("clinica-{account_id}-principal"),
            org.as_str(),
            "open",
            Some("+551140028922"),
            None,
        ),
        (
            format!("clinica-{account_id}-recepcao"),
            org.as_str(),
            "connecting",
            Some("+551140028923"),
            None,
        ),
        (
            format!("clinica-{account_id}-backup"),
            org.as_str(),
            "close",
            Some("+551140028924"),
            None,
        ),
        (
            format!("clinica-{account_id}-antigo"),
            org.as_str(),
            "error",
            None,
            Some("QR code expired"),
        ),
    ];
    let unmapped = format!("org-unmapped-{account_id}");
    let mut count = 0;
    for (name, organization, status, phone, error) in instances.into_iter().chain([(
        format!("orfa-{account_id}"),
        unmapped.as_str(),
        "open",
        Some("+551140028925"),
        None,
    )]) {
        ferry
            .store
            .insert_evolution_instance(&LegacyEvolutionInstance {
                api_key: Some(format!("legacy-key-{name}")),
                api_url: Some("http://127.0.0.1:8080".into()),
                webhook_url: Some(format!("http://127.0.0.1:3000/webhooks/evolution/{name}")),
                instance_name: name,
                organization_id: organization.to_owned(),
                status: status.into(),
                phone_number: phone.map(str::to_owned),
                error_message: error.map(str::to_owned),
            })
            .await?;
        count += 1;
    }
    let configs = [
        (
            "whatsapp_cloud",
            format!("1098765{account_id:08}"),
            "+551140028922",
        ),
        (
            "dialog360",
            format!("3603600{account_id:08}"),
            "+552130034000",
        ),
    ];
    for (provider, phone_number_id, phone) in &configs {
        ferry
            .store
            .insert_business_config(&LegacyBusinessConfig {
                organization_id: org.clone(),
                provider: (*provider).into(),
                phone_number_id: phone_number_id.clone(),
                phone_number: Some((*phone).into()),
                business_account_id: Some(format!("waba-{account_id}")),
                access_token: Some(format!("legacy-access-token-{phone_number_id}")),
                app_secret: Some(format!("legacy-app-secret-{phone_number_id}")),
                verify_token: Some(format!("legacy-verify-{phone_number_id}")),
                status: "active".into(),
            })
            .await?;
    }
    Ok((count, configs.len() as u64))
}

const FIRST_NAMES: [&str; 24] = [
    "Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela",
    "João", "Karina", "Lucas", "Mariana", "Nicolas", "Olívia", "Pedro", "Quésia", "Rafael",
    "Sofia", "Thiago", "Ursula", "Vitor", "Yasmin", "Zeca",
];
const LAST_NAMES: [&str; 16] = [
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
];
const CITIES: [&str; 6] = [
    "São Paulo",
    "Rio de Janeiro",
    "Belo Horizonte",
    "Curitiba",
    "Porto Alegre",
    "Recife",
];
const LABELS: [&str; 5] = ["vip", "lead", "paciente", "retorno", "orcamento"];
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_pdf_has_a_valid_xref_offset() {
        let pdf = tiny_pdf("x");
        let text = String::from_utf8(pdf.clone()).unwrap();
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(text[startxref..].starts_with("xref"));
        let wav = wav_tone(440);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(wav[4..8].try_into().unwrap()) as usize,
            wav.len() - 8
        );
    }
}
