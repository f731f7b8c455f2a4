//! Operators' realistic sequences of migrations and reverts (issue 17, items 8–9): nothing ends in the wrong
//! inbox.

use ferry::domain::ChannelType;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, inbox_of, seeded, spawn_app};

struct Account {
    id: i64,
    token: String,
}

impl Account {
    fn migrations(&self, source: i64) -> String {
        format!("/api/v1/accounts/{}/inboxes/{source}/migrations", self.id)
    }

    /// Starts a migration and runs it to its end in this process's worker.
    async fn migrate(&self, app: &TestApp, source: i64, destination: i64) -> i64 {
        let (status, created) = app
            .post_json(
                &self.migrations(source),
                Some(&self.token),
                &json!({"destination_inbox_id": destination}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        app.drain_worker().await;
        created["id"].as_i64().unwrap()
    }

    async fn revert(&self, app: &TestApp, source: i64, id: i64) -> (u16, Value) {
        let (status, body) = app
            .post_json(
                &format!("{}/{id}/revert", self.migrations(source)),
                Some(&self.token),
                &json!({}),
            )
            .await;
        (status.as_u16(), body)
    }
}

async fn conversations_in(app: &TestApp, inbox: i64) -> i64 {
    app.ferry
        .store
        .inbox_counts(inbox)
        .await
        .unwrap()
        .conversations
}

/// Item 8: A→B, then B→C; reverting A→B first would pull conversations from under B→C, so it is refused,
/// naming B→C. Reverted newest first, every conversation is back where it started.
pub async fn reverts_out_of_order_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 30, 0.3).await;
    let account = Account {
        id: report.account_id,
        token,
    };
    let a = inbox_of(&report, ChannelType::Evolution);
    let b = inbox_of(&report, ChannelType::WhatsappCloud);
    let c = inbox_of(&report, ChannelType::Dialog360);
    let before = [
        conversations_in(&app, a).await,
        conversations_in(&app, b).await,
        conversations_in(&app, c).await,
    ];
    let first = account.migrate(&app, a, b).await;
    let second = account.migrate(&app, b, c).await;
    assert_eq!(conversations_in(&app, c).await, before.iter().sum::<i64>());

    let (status, refused) = account.revert(&app, a, first).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "later_migration", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("migration {second}")),
        "{refused}"
    );
    assert_eq!(
        conversations_in(&app, c).await,
        before.iter().sum::<i64>(),
        "nothing moved"
    );

    assert_eq!(account.revert(&app, b, second).await.0, 200);
    assert_eq!(account.revert(&app, a, first).await.0, 200);
    assert_eq!(
        [
            conversations_in(&app, a).await,
            conversations_in(&app, b).await,
            conversations_in(&app, c).await,
        ],
        before
    );
}

/// Item 9: A→B redirects A's webhooks to B; migrating back (B→A) ends that redirect, so a new message for A's
/// number lands in A with its history. The preview of B→A says so.
pub async fn migrating_back_ends_the_old_redirect(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 10, 0.0).await;
    let account = Account {
        id: report.account_id,
        token,
    };
    let a = inbox_of(&report, ChannelType::Evolution);
    let b = inbox_of(&report, ChannelType::WhatsappCloud);
    let (status, integration) = app
        .post_json(
            &format!("/api/v1/accounts/{}/integrations", account.id),
            Some(&account.token),
            &json!({"inbox_id": a, "provider": "evolution", "instance_name": "clinica-sp"}),
        )
        .await;
    assert_eq!(status, 201, "{integration}");
    let hook = integration["webhook_url"]
        .as_str()
        .unwrap()
        .replace(&app.ferry.config.public_url(), "");
    let deliver = |id: &'static str| {
        let (app, hook) = (&app, &hook);
        async move {
            let body = crate::webhooks::upsert(id, "5511977776666@s.whatsapp.net", false, "oi");
            let (status, answer) =
                crate::webhooks::post_raw(app, hook, &serde_json::to_vec(&body).unwrap()).await;
            assert_eq!(status, 200, "{answer}");
            let conversation = answer["conversation_id"].as_i64().unwrap();
            app.ferry
                .store
                .get_conversation(report.account_id, conversation)
                .await
                .unwrap()
                .inbox_id
        }
    };

    account.migrate(&app, a, b).await;
    assert_eq!(deliver("REDIR-1").await, b, "redirected to B");

    let (status, preview) = app
        .get(
            &format!("{}/preview?destination_inbox_id={a}", account.migrations(b)),
            Some(&account.token),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert!(
        preview["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "REDIRECT_ENDS"),
        "{preview}"
    );
    account.migrate(&app, b, a).await;
    assert_eq!(
        deliver("REDIR-2").await,
        a,
        "after migrating back, A's webhooks land in A"
    );
}
