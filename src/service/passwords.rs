//! New passwords and their verifiers, hashed ahead on a thread of their own, four at once.
//!
//! A verifier is PBKDF2's 8,192 SHA-256 compressions; computed one at a time it was about
//! half of a create's CPU. Computed [`pgua_scram::LANES`] side by side
//! ([`pgua_scram::verifiers`]) each costs a third to a half of the CPU of one computed
//! alone, so a thread keeps a small stock of fresh password–verifier pairs, filled four at
//! a time: a create or reset takes one at once (no wait for the hashing, no hop to the
//! thread) and the stock is refilled behind it. Each pair is handed out once and then
//! dropped from the stock; the stock lives only in this process's memory (zeroed when
//! dropped, like every password) and is a few random strings tied to no user until handed
//! out. One thread is enough: it hashes 3,800 to 5,800 verifiers a second on the project's
//! 2-core machines, more than a PostgreSQL server accepts new ones (the server runs the
//! same PBKDF2 on every `CREATE ROLE … PASSWORD`, to refuse an empty password).

use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::plan::{Password, Verifier};

/// Pairs kept ready: two batches, so a burst finds some and the refill runs behind it.
const STOCK: usize = 2 * pgua_scram::LANES;

/// The stock, shared by the requests that take from it and the thread that fills it. A
/// request takes its pair under the lock, with no hop to the thread and back (two thread
/// wake-ups a create, when each request was a message the thread answered); the thread is
/// woken only when a batch fits.
struct Stock {
    pairs: Mutex<Vec<(Password, Verifier)>>,
    /// Rung when the stock has room for a batch: the thread waits on it.
    room: Condvar,
    /// Rung after each batch: requests that found the stock empty wait on it.
    refilled: Notify,
}

/// The stock; its thread is started on first use ([`HASHER`]).
static SHARED: Stock = Stock {
    pairs: Mutex::new(Vec::new()),
    room: Condvar::new(),
    refilled: Notify::const_new(),
};

/// The thread that fills [`SHARED`], started by the first request (commands that never
/// create never start it).
static HASHER: LazyLock<bool> = LazyLock::new(|| {
    std::thread::Builder::new()
        .name("scram-hasher".into())
        .spawn(|| fill(&SHARED))
        .is_ok()
});

impl Stock {
    fn lock(&self) -> MutexGuard<'_, Vec<(Password, Verifier)>> {
        // The pairs are whole under any panic: a push or a pop either happened or not.
        self.pairs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pair, if there is one; wakes the thread when this take makes room for a batch.
    fn take(&self) -> Option<(Password, Verifier)> {
        let mut pairs = self.lock();
        let pair = pairs.pop();
        if pairs.len() + pgua_scram::LANES == STOCK || pair.is_none() {
            self.room.notify_one();
        }
        pair
    }
}

/// A fresh password and its SCRAM-SHA-256 verifier.
pub async fn new_password() -> Result<(Password, Verifier)> {
    if !*HASHER {
        return Err(Error::Internal(anyhow::anyhow!(
            "the operating system refused the verifier thread"
        )));
    }
    let stock = &SHARED;
    loop {
        if let Some(pair) = stock.take() {
            return Ok(pair);
        }
        // Armed before the stock is looked at again, so that no refill is missed.
        let mut refilled = std::pin::pin!(stock.refilled.notified());
        refilled.as_mut().enable();
        if let Some(pair) = stock.take() {
            return Ok(pair);
        }
        refilled.await;
    }
}

/// The thread: hashes a batch whenever one fits in the stock, and sleeps otherwise.
fn fill(stock: &Stock) {
    loop {
        let pairs = stock.lock();
        let pairs = stock
            .room
            .wait_while(pairs, |p| p.len() + pgua_scram::LANES > STOCK)
            .unwrap_or_else(|p| p.into_inner());
        drop(pairs);
        let batch = batch();
        stock.lock().extend(batch);
        stock.refilled.notify_waiters();
    }
}

/// One batch of [`pgua_scram::LANES`] new pairs.
fn batch() -> Vec<(Password, Verifier)> {
    let passwords: Vec<Password> = (0..pgua_scram::LANES)
        .map(|_| Password::generate())
        .collect();
    let verifiers = Password::scram_verifiers(&passwords);
    passwords.into_iter().zip(verifiers).collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_password_and_its_verifier() {
        // More than the stock holds, so that some wait for a refill.
        let pairs = futures_util::future::join_all((0..50).map(|_| super::new_password())).await;
        let mut seen = std::collections::HashSet::new();
        for pair in pairs {
            let (password, verifier) = pair.unwrap();
            assert!(
                seen.insert(password.expose().to_owned()),
                "handed out twice"
            );
            let salt = verifier.expose().split(['$', ':']).nth(2).unwrap();
            let salt = base64::engine::general_purpose::STANDARD
                .decode(salt)
                .unwrap();
            assert_eq!(
                pgua_scram::verifier(password.expose().as_bytes(), &salt),
                verifier.expose()
            );
        }
    }
}
