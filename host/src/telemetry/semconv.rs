//! Every OpenTelemetry name the host emits, in one place: OpenTelemetry semantic conventions
//! **v1.41.0** (HTTP: stable; GenAI: status Development, so pinned: v1.41.0 is the last release
//! of the main repository before the GenAI conventions moved to their own). Moving to a newer
//! version is a change to this file and to the names the tests check.

/// The version followed, as the instrumentation scope's schema URL says it.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";

// Spans and metrics of a call to a model (docs/gen-ai/gen-ai-spans.md, gen-ai-metrics.md).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
// Opt-in content (JSON strings).
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";

/// `gen_ai.operation.name` of a `generateContent` call: a chat completion.
pub const OPERATION_CHAT: &str = "chat";
/// `gen_ai.provider.name` of Vertex AI.
pub const PROVIDER_VERTEX_AI: &str = "gcp.vertex_ai";
pub const TOKEN_TYPE_INPUT: &str = "input";
pub const TOKEN_TYPE_OUTPUT: &str = "output";

// HTTP (docs/http/http-spans.md, http-metrics.md) and general attributes.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const HTTP_ROUTE: &str = "http.route";
pub const HTTP_REQUEST_RESEND_COUNT: &str = "http.request.resend_count";
pub const URL_PATH: &str = "url.path";
pub const URL_SCHEME: &str = "url.scheme";
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
pub const CLIENT_ADDRESS: &str = "client.address";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const ERROR_TYPE: &str = "error.type";

// Resource attributes.
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
pub const CLOUD_PROVIDER: &str = "cloud.provider";
pub const CLOUD_PLATFORM: &str = "cloud.platform";
pub const GCP_PROJECT_ID: &str = "gcp.project_id";
pub const FAAS_NAME: &str = "faas.name";
pub const FAAS_VERSION: &str = "faas.version";

/// A metric instrument: all are explicit-bucket histograms here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Instrument {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub bounds: &'static [f64],
}

/// The bucket boundaries the GenAI conventions advise for durations, in seconds.
const GEN_AI_DURATION_BOUNDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

pub const HTTP_SERVER_REQUEST_DURATION: Instrument = Instrument {
    name: "http.server.request.duration",
    unit: "s",
    description: "Duration of HTTP server requests.",
    bounds: &[
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ],
};

pub const GEN_AI_CLIENT_OPERATION_DURATION: Instrument = Instrument {
    name: "gen_ai.client.operation.duration",
    unit: "s",
    description: "GenAI operation duration.",
    bounds: GEN_AI_DURATION_BOUNDS,
};

pub const GEN_AI_CLIENT_TOKEN_USAGE: Instrument = Instrument {
    name: "gen_ai.client.token.usage",
    unit: "{token}",
    description: "Number of input and output tokens used.",
    bounds: &[
        1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
        4194304.0, 16777216.0, 67108864.0,
    ],
};

pub const GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK: Instrument = Instrument {
    name: "gen_ai.client.operation.time_to_first_chunk",
    unit: "s",
    description: "Time to receive the first chunk of a streamed response.",
    bounds: GEN_AI_DURATION_BOUNDS,
};

/// Every instrument, in the order they are exported.
pub const INSTRUMENTS: [Instrument; 4] = [
    HTTP_SERVER_REQUEST_DURATION,
    GEN_AI_CLIENT_OPERATION_DURATION,
    GEN_AI_CLIENT_TOKEN_USAGE,
    GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_increase() {
        for instrument in INSTRUMENTS {
            assert!(
                instrument.bounds.windows(2).all(|w| w[0] < w[1]),
                "{}",
                instrument.name
            );
        }
    }
}
