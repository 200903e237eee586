//! Service-account keys: a JWT signed with the account's RSA key (RS256) is exchanged for an
//! access token at the token endpoint (RFC 7523, the `jwt-bearer` grant).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use super::oauth::{self, AccessToken};
use crate::http_client::HttpClient;

/// The OAuth scope requested: all Google Cloud APIs the account's roles allow, Vertex AI among them.
pub(super) const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Lifetime asked for in the assertion; Google's maximum.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a `"type": "service_account"` key file that are used.
#[derive(Deserialize)]
pub(super) struct ServiceAccountFile {
    client_email: String,
    private_key: String,
    token_uri: Option<String>,
}

/// A service account able to sign its own token requests.
pub(super) struct ServiceAccount {
    client_email: String,
    key: RsaKeyPair,
    token_uri: String,
}

impl ServiceAccount {
    /// Checks the key file's fields; errors never quote the key.
    pub(super) fn new(file: ServiceAccountFile) -> Result<ServiceAccount> {
        if file.client_email.is_empty() {
            bail!("client_email is empty");
        }
        let key = parse_private_key(&file.private_key).context("invalid private_key")?;
        let token_uri = oauth::token_uri(file.token_uri)?;
        Ok(ServiceAccount {
            client_email: file.client_email,
            key,
            token_uri,
        })
    }

    pub(super) fn client_email(&self) -> &str {
        &self.client_email
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
        let assertion = self.assertion(SystemTime::now())?;
        let body = oauth::form(&[("grant_type", JWT_BEARER), ("assertion", &assertion)]);
        oauth::post_form(client, &self.token_uri, body, timeout).await
    }

    /// The signed JWT: `base64url(header).base64url(claims).base64url(RS256 signature)`.
    fn assertion(&self, now: SystemTime) -> Result<String> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_secs();
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME.as_secs(),
        });
        let mut jwt = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                jwt.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow!("cannot sign the token request with the service account key"))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// An RSA key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or PKCS#1.
fn parse_private_key(pem: &str) -> Result<RsaKeyPair> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| anyhow!("not a PEM-encoded private key"))?;
    let key = match &der {
        PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
        _ => bail!("not an RSA key"),
    };
    key.map_err(|e| anyhow!("RSA key rejected: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::fake;

    fn account(pem: &str) -> ServiceAccount {
        ServiceAccount::new(ServiceAccountFile {
            client_email: "sa@test-project.iam.gserviceaccount.com".into(),
            private_key: pem.into(),
            token_uri: Some("https://oauth2.example/token".into()),
        })
        .unwrap()
    }

    #[test]
    fn assertion_is_an_rs256_jwt_with_googles_claims() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let jwt = account(fake::TEST_KEY_PKCS8).assertion(now).unwrap();
        let claims = fake::verify_jwt(&jwt).expect("signature verifies with the public key");
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "sa@test-project.iam.gserviceaccount.com",
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "aud": "https://oauth2.example/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
    }

    #[test]
    fn a_tampered_assertion_fails_verification() {
        let jwt = account(fake::TEST_KEY_PKCS8)
            .assertion(SystemTime::now())
            .unwrap();
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[10] ^= 1;
        let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert!(fake::verify_jwt(&tampered).is_err());
    }

    #[test]
    fn pkcs1_keys_sign_too() {
        let jwt = account(fake::TEST_KEY_PKCS1)
            .assertion(SystemTime::now())
            .unwrap();
        fake::verify_jwt(&jwt).unwrap();
    }

    #[test]
    fn bad_keys_are_rejected_without_quoting_them() {
        for pem in [
            "",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ",
            "-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2N3Z2dTakFnRUFBb0lCQVE=\n-----END PRIVATE KEY-----\n",
        ] {
            let err = ServiceAccount::new(ServiceAccountFile {
                client_email: "sa@p.iam.gserviceaccount.com".into(),
                private_key: pem.into(),
                token_uri: None,
            })
            .err()
            .expect("rejected");
            let text = format!("{err:#}");
            assert!(text.starts_with("invalid private_key"), "{text}");
            assert!(!text.contains("MIIE") && !text.contains("TUlJ"), "{text}");
        }
    }

    #[test]
    fn token_uri_defaults_to_googles() {
        let account = ServiceAccount::new(ServiceAccountFile {
            client_email: "sa@p.iam.gserviceaccount.com".into(),
            private_key: fake::TEST_KEY_PKCS8.into(),
            token_uri: None,
        })
        .unwrap();
        assert_eq!(account.token_uri(), "https://oauth2.googleapis.com/token");
    }
}
