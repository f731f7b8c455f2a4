use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiResult;
use super::extract::AccountAccess;
use crate::services::Ferry;

pub fn router() -> Router<Ferry> {
    Router::new().route("/accounts/{account_id}", get(show))
}

async fn show(State(ferry): State<Ferry>, access: AccountAccess) -> ApiResult<Json<Value>> {
    let account = ferry.store.get_account(access.account_id).await?;
    Ok(Json(json!({
        "id": account.id,
        "name": account.name,
        "migration_status": account.migration_status,
        "merge_brazil_ninth_digit": account.merge_brazil_ninth_digit,
        "role": access.role,
        "created_at": account.created_at,
    })))
}
