//! `GET` (or `HEAD`) and `DELETE /conversations/{id}`: a stored conversation's transcript, or
//! its removal.

use serde_json::json;

use crate::chat_state::State;
use crate::config::Variables;
use crate::conversation::{self, ConversationId, Lookup};
use crate::error::ApiError;
use crate::request::printable;
use crate::response::ApiResponse;
use crate::routes::CONVERSATIONS_PREFIX;
use crate::store::StateSettings;
use crate::validation;
use crate::vertex::Clock;

/// `GET` (or `HEAD`) and `DELETE /conversations/{id}`.
pub fn conversation(
    method: &str,
    path_and_query: &str,
    vars: &impl Variables,
    state: &State<'_>,
    clock: &impl Clock,
) -> ApiResponse {
    match conversation_inner(method, path_and_query, vars, state, clock) {
        Ok(response) => response,
        Err(e) => e.to_response(),
    }
}

fn conversation_inner(
    method: &str,
    path_and_query: &str,
    vars: &impl Variables,
    state: &State<'_>,
    clock: &impl Clock,
) -> Result<ApiResponse, ApiError> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let raw = path.strip_prefix(CONVERSATIONS_PREFIX).unwrap_or_default();
    let id = ConversationId::parse(raw).ok_or_else(|| {
        ApiError::Validation(Box::new(validation::ValidationIssue {
            kind: "string_pattern_mismatch",
            loc: vec![json!("path"), json!("conversation_id")],
            msg: "String should match pattern '^[0-9a-f]{32}$'".into(),
            input: json!(printable(raw)),
            ctx: Some(json!({"pattern": "^[0-9a-f]{32}$"})),
        }))
    })?;
    let settings = StateSettings::load(vars)?;
    let now = clock.unix_seconds();
    if method == "DELETE" {
        return if conversation::delete(state.kv, &id, now)? {
            Ok(ApiResponse {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            })
        } else {
            Err(ApiError::ConversationNotFound)
        };
    }
    let Lookup::Found(found) = conversation::find(state.kv, &id, now)? else {
        return Err(ApiError::ConversationNotFound);
    };
    let turns = conversation::transcript(state.kv, &found)?;
    Ok(ApiResponse::json(
        200,
        &conversation::transcript_body(&found, &turns, &settings),
    ))
}
