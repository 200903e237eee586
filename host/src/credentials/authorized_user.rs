//! Authorized-user files (`gcloud auth application-default login`): a refresh token is exchanged
//! for an access token at the token endpoint (the `refresh_token` grant).

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::oauth::{self, AccessToken};
use crate::http_client::HttpClient;

/// The fields of a `"type": "authorized_user"` file that are used.
#[derive(Deserialize)]
pub(super) struct AuthorizedUserFile {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    token_uri: Option<String>,
}

/// A user's refresh token and the OAuth client it was issued to.
pub(super) struct AuthorizedUser {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    token_uri: String,
}

impl AuthorizedUser {
    /// Checks the file's fields; errors never quote the secrets.
    pub(super) fn new(file: AuthorizedUserFile) -> Result<AuthorizedUser> {
        for (name, value) in [
            ("client_id", &file.client_id),
            ("client_secret", &file.client_secret),
            ("refresh_token", &file.refresh_token),
        ] {
            if value.is_empty() {
                bail!("{name} is empty");
            }
        }
        Ok(AuthorizedUser {
            token_uri: oauth::token_uri(file.token_uri)?,
            client_id: file.client_id,
            client_secret: file.client_secret,
            refresh_token: file.refresh_token,
        })
    }

    pub(super) fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// A fresh access token from the token endpoint.
    pub(super) async fn fetch(
        &self,
        client: &HttpClient,
        timeout: Duration,
    ) -> Result<AccessToken> {
        let body = oauth::form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
            ("refresh_token", &self.refresh_token),
        ]);
        oauth::post_form(client, &self.token_uri, body, timeout).await
    }
}
