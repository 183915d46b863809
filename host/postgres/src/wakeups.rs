//! Wake-up hints between hosts: a commit that makes a run runnable or sets
//! a timer sends `NOTIFY waymark_wakeup` (in its transaction, so only if it
//! lands; identical ones coalesce), and each store that has listeners holds
//! one extra connection that `LISTEN`s and hands each hint to them. Hints
//! only save a wait: a missed one (the connection dropped, the server
//! restarted) costs a host at most its poll interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::AsyncMessage;
use waymark_core::{Wakeup, WakeupListener};

use crate::PostgresStore;

/// The channel commits notify on.
pub(crate) const CHANNEL: &str = "waymark_wakeup";

/// How long the listener waits before connecting again after losing its
/// connection.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// The listeners of one store, and whether its listening task runs.
#[derive(Default)]
pub(crate) struct Wakeups {
    listeners: Mutex<Vec<WakeupListener>>,
    started: AtomicBool,
}

impl Wakeups {
    fn tell(&self, payload: &str) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for wakeup in parse(payload) {
            for listener in &listeners {
                listener(wakeup);
            }
        }
    }
}

/// The hints of a notification's text (`r`, `t<ms>`, joined by commas);
/// anything else is ignored.
fn parse(payload: &str) -> Vec<Wakeup> {
    payload
        .split(',')
        .filter_map(|part| match part {
            "r" => Some(Wakeup::Runnable),
            _ => part
                .strip_prefix('t')
                .and_then(|ms| ms.parse().ok())
                .map(Wakeup::TimerAt),
        })
        .collect()
}

impl PostgresStore {
    /// Adds `listener`, starting the listening connection with the first.
    pub(crate) fn add_wakeup_listener(&self, listener: WakeupListener) {
        self.wakeups
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
        if !self.wakeups.started.swap(true, Ordering::SeqCst) {
            let config = self.listen_config.clone();
            let wakeups = self.wakeups.clone();
            let url = self.url().to_string();
            self.handle.spawn(listen(config, wakeups, url));
        }
    }
}

/// Listens for hints until the store's runtime shuts down, connecting
/// again whenever the connection is lost.
async fn listen(config: tokio_postgres::Config, wakeups: Arc<Wakeups>, url: String) {
    loop {
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let messages = async {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => wakeups.tell(n.payload()),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(%url, error = %e, "wake-up connection lost");
                                break;
                            }
                        }
                    }
                };
                let subscribe = async {
                    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        tracing::warn!(%url, error = %e, "could not listen for wake-ups");
                        return;
                    }
                    std::future::pending::<()>().await
                };
                tokio::select! {
                    () = messages => {}
                    () = subscribe => {}
                }
            }
            Err(e) => tracing::debug!(%url, error = %e, "could not connect to listen for wake-ups"),
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_junk_is_ignored() {
        assert_eq!(parse("r"), [Wakeup::Runnable]);
        assert_eq!(parse("r,t42"), [Wakeup::Runnable, Wakeup::TimerAt(42)]);
        assert_eq!(parse("t-1,x,,t"), []);
    }
}
