//! Reading a request: its body (bounded, JSON only) and the headers that choose how a chat is
//! answered (`Accept`, `Cache-Control`).

use futures::{Stream, StreamExt};

use crate::chat_log::diagnostic;
use crate::error::ApiError;

/// Largest `/chat` body accepted, in bytes: a full history (24,000 characters, up to 4 bytes
/// each as UTF-8) and a 1000-character message fit; more only invites abuse.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// Reads a body of at most [`MAX_BODY_BYTES`], after checking its `Content-Type`. An announced
/// oversized body is refused before any of it is read. Chunk errors carry the runtime's words,
/// which go to the log only.
pub async fn read_body(
    content_type: Option<&str>,
    content_length: Option<&str>,
    mut chunks: impl Stream<Item = Result<Vec<u8>, String>> + Unpin,
) -> Result<Vec<u8>, ApiError> {
    check_content_type(content_type)?;
    if let Some(length) = content_length.and_then(|v| v.parse::<usize>().ok())
        && length > MAX_BODY_BYTES
    {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|detail| {
            diagnostic(
                "WARNING",
                &format!("reading the request body failed: {detail}"),
            );
            ApiError::BodyUnreadable { detail }
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `/chat` takes JSON; a missing Content-Type is read as JSON, as the original service did.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            content_type: printable(value),
        })
    }
}

/// Whether an `Accept` header asks for Server-Sent Events (and not also for JSON).
pub fn accepts_event_stream(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let lists = |wanted: &str| {
        accept.split(',').any(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case(wanted)
        })
    };
    lists("text/event-stream") && !lists("application/json")
}

/// Whether a `Cache-Control` request header says `no-cache` (the response cache is skipped).
pub fn asks_no_cache(cache_control: Option<&str>) -> bool {
    cache_control.is_some_and(|value| {
        value
            .split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
    })
}

/// Caller-supplied text echoed in an error: bounded and free of control characters.
pub(crate) fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::stream;

    #[test]
    fn content_types() {
        assert!(check_content_type(None).is_ok());
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("application/merge-patch+json")).is_ok());
        assert!(matches!(
            check_content_type(Some("text/plain")),
            Err(ApiError::UnsupportedMediaType { .. })
        ));
        assert!(check_content_type(Some("application/x-www-form-urlencoded")).is_err());
    }

    #[test]
    fn event_stream_accept() {
        assert!(accepts_event_stream(Some("text/event-stream")));
        assert!(accepts_event_stream(Some("Text/Event-Stream;q=0.9")));
        assert!(!accepts_event_stream(Some(
            "application/json, text/event-stream"
        )));
        assert!(!accepts_event_stream(Some("application/json")));
        assert!(!accepts_event_stream(None));
    }

    #[test]
    fn a_body_is_read_whole_and_bounded() {
        let chunks = |parts: Vec<Result<Vec<u8>, String>>| stream::iter(parts);
        let read = |length: Option<&str>, parts| block_on(read_body(None, length, chunks(parts)));
        assert_eq!(
            read(None, vec![Ok(b"{}".to_vec()), Ok(b" ".to_vec())]),
            Ok(b"{} ".to_vec())
        );
        let too_large = Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
        let big = (MAX_BODY_BYTES + 1).to_string();
        assert_eq!(read(Some(&big), vec![]), too_large);
        assert_eq!(
            read(
                None,
                vec![Ok(vec![b' '; MAX_BODY_BYTES]), Ok(b"x".to_vec())]
            ),
            too_large
        );
        assert_eq!(
            read(None, vec![Err("reset".into())]),
            Err(ApiError::BodyUnreadable {
                detail: "reset".into()
            })
        );
        assert!(matches!(
            block_on(read_body(Some("text/plain"), None, chunks(vec![]))),
            Err(ApiError::UnsupportedMediaType { .. })
        ));
    }
}
