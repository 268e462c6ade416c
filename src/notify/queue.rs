//! One bounded queue and one delivery task per channel, so a slow or failing channel delays
//! and drops only its own messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::config::Filter;
use super::{Channel, Counters, DeliveryError, Event};

/// How often and how patiently a message is tried.
#[derive(Clone, Debug)]
pub(crate) struct Retry {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Retry {
    /// The wait after failed attempt `attempt` (1-based): base, 2·base, 4·base, … capped.
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << (attempt - 1).min(20);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// The sending end of one channel's queue.
pub(crate) struct ChannelQueue {
    name: String,
    filter: Filter,
    tx: mpsc::Sender<Event>,
    counters: Arc<Counters>,
}

impl ChannelQueue {
    /// The channel's name and how many messages wait in its queue.
    pub fn depth(&self) -> (&str, usize) {
        (&self.name, self.tx.max_capacity() - self.tx.capacity())
    }

    /// Starts the channel's delivery task; it ends when the queue's sender is dropped.
    pub fn spawn(
        name: String,
        filter: Filter,
        channel: Channel,
        capacity: usize,
        retry: Retry,
        counters: Arc<Counters>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(capacity);
        let task_name = name.clone();
        let task_counters = counters.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                deliver(&task_name, &channel, &event, &retry, &task_counters).await;
            }
        });
        Self {
            name,
            filter,
            tx,
            counters,
        }
    }

    /// Enqueues `event` if the filter accepts it; a full queue drops it.
    pub fn offer(&self, event: &Event) {
        if !self.filter.accepts(event.event, &event.env) {
            return;
        }
        if let Err(e) = self.tx.try_send(event.clone()) {
            let why = match e {
                TrySendError::Full(_) => "queue full",
                TrySendError::Closed(_) => "delivery task stopped",
            };
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                channel = %self.name,
                event = event.event.as_str(),
                request_id = %event.request_id,
                role = %event.role,
                "notification dropped: {why}"
            );
        }
    }
}

async fn deliver(name: &str, channel: &Channel, event: &Event, retry: &Retry, counters: &Counters) {
    let mut attempt = 1;
    loop {
        let error = match channel.send(event).await {
            Ok(()) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(channel = %name, event = event.event.as_str(), attempt, "notification sent");
                return;
            }
            Err(e) => e,
        };
        let last = attempt >= retry.max_attempts || matches!(error, DeliveryError::Permanent(_));
        if last {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                channel = %name,
                event = event.event.as_str(),
                request_id = %event.request_id,
                role = %event.role,
                attempts = attempt,
                error = %error,
                "notification dropped: delivery failed"
            );
            return;
        }
        let wait = retry.delay(attempt);
        tracing::info!(
            channel = %name,
            event = event.event.as_str(),
            attempt,
            retry_in_ms = wait.as_millis() as u64,
            error = %error,
            "notification attempt failed"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let delays: Vec<u128> = (1..=6).map(|a| r.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.delay(64).as_millis(), 1000);
    }
}
