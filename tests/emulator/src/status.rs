//! Errors in Google's `google.rpc.Status` envelope:
//! `{"error": {"code": 404, "message": "...", "status": "NOT_FOUND", "details": [...]}}`.

use serde_json::{Value, json};

/// An error reply: HTTP status, canonical gRPC status name, message and optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub status: &'static str,
    pub message: String,
    pub details: Vec<Value>,
}

impl ApiError {
    pub fn new(code: u16, status: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", message)
    }

    /// The 404 for a model that does not exist or is retired.
    pub fn model_not_found(resource: &str) -> Self {
        Self::not_found(format!(
            "Publisher Model `{resource}` was not found or your project does not have access to it. \
             Please ensure you are using a valid model version. For more information, see: \
             https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions"
        ))
    }

    /// The 401 for a missing credential (`reason` CREDENTIALS_MISSING) or a wrong one.
    pub fn unauthenticated(missing: bool, method: &str) -> Self {
        let (message, reason) = if missing {
            (
                "Request is missing required authentication credential. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "CREDENTIALS_MISSING",
            )
        } else {
            (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            )
        };
        Self::new(401, "UNAUTHENTICATED", message).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {
                "service": "aiplatform.googleapis.com",
                "method": format!("google.cloud.aiplatform.v1.PredictionService.{method}"),
            },
        }))
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    /// The JSON body Google sends for this error.
    pub fn to_json(&self) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "status": self.status,
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_code_message_status() {
        let body = ApiError::not_found("nope").to_json();
        assert_eq!(
            body,
            json!({"error": {"code": 404, "message": "nope", "status": "NOT_FOUND"}})
        );
    }

    #[test]
    fn details_only_when_present() {
        let body = ApiError::unauthenticated(true, "GenerateContent").to_json();
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Request is missing required authentication credential")
        );
        assert_eq!(body["error"]["details"][0]["reason"], "CREDENTIALS_MISSING");
        let wrong = ApiError::unauthenticated(false, "GenerateContent");
        assert!(
            wrong
                .message
                .starts_with("Request had invalid authentication")
        );
    }

    #[test]
    fn model_not_found_names_the_resource() {
        let e = ApiError::model_not_found("projects/p/locations/l/publishers/google/models/m");
        assert!(e.message.starts_with(
            "Publisher Model `projects/p/locations/l/publishers/google/models/m` was not found"
        ));
        assert_eq!((e.code, e.status), (404, "NOT_FOUND"));
    }
}
