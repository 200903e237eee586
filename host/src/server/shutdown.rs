//! Graceful shutdown: connections with no request in progress close at once; connections with
//! one finish it (within the grace period) and then close.

use std::time::Duration;

use tokio::sync::watch;

/// Held by the server; tells connections to stop and waits for them.
pub struct Shutdown {
    signal: watch::Sender<bool>,
}

/// Held by each connection until it ends.
pub struct ShutdownWatch {
    signal: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            signal: watch::Sender::new(false),
        }
    }

    pub fn watch(&self) -> ShutdownWatch {
        ShutdownWatch {
            signal: self.signal.subscribe(),
        }
    }

    /// Tells every connection to stop.
    pub fn begin(&self) {
        self.signal.send_replace(true);
    }

    /// True once every connection has ended, false if some are still open after `limit`.
    pub async fn wait(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.signal.closed())
            .await
            .is_ok()
    }
}

impl ShutdownWatch {
    /// Resolves once shutdown has begun.
    pub async fn started(&mut self) {
        // An error means the server is gone, which is a shutdown too.
        let _ = self.signal.wait_for(|stopping| *stopping).await;
    }
}
