//! New passwords and their verifiers, hashed ahead on a thread of their own, four at once.
//!
//! A verifier is PBKDF2's 8,192 SHA-256 compressions; computed one at a time it was about
//! half of a create's CPU. Computed [`pgua_scram::LANES`] side by side ([`pgua_scram::verifiers`]) each costs about
//! half the CPU of one computed alone, so the thread keeps a small stock of fresh
//! password–verifier pairs, filled four at a time: a create or reset takes one at once
//! (no wait for the hashing) and the stock is refilled behind it. Each pair is handed out
//! once and then dropped from the stock; the stock lives only in this process's memory
//! (zeroed when dropped, like every password) and is a few random strings tied to no
//! user until handed out. One thread is enough: it hashes some 3,800 verifiers a second on
//! the project's 2-core machine, more than a PostgreSQL server accepts new ones (the server
//! runs the same PBKDF2 on every `CREATE ROLE … PASSWORD`, to refuse an empty password).

use std::sync::{LazyLock, mpsc};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::plan::{Password, Verifier};

/// Pairs kept ready: two batches, so a burst finds some and the refill runs behind it.
const STOCK: usize = 2 * pgua_scram::LANES;

/// Where a request waits for its password.
type Reply = oneshot::Sender<(Password, Verifier)>;

/// The thread's queue, started on first use (commands that never create never start it).
static QUEUE: LazyLock<mpsc::Sender<Reply>> = LazyLock::new(|| {
    let (queue, requests) = mpsc::channel();
    std::thread::Builder::new()
        .name("scram-hasher".into())
        .spawn(move || hash(&requests))
        .expect("the operating system refused a thread");
    queue
});

/// A fresh password and its SCRAM-SHA-256 verifier.
pub async fn new_password() -> Result<(Password, Verifier)> {
    let stopped = || Error::Internal(anyhow::anyhow!("the verifier thread has stopped"));
    let (reply, answer) = oneshot::channel();
    QUEUE.send(reply).map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())
}

/// Answers requests from the stock and refills it whenever nobody is waiting.
fn hash(requests: &mpsc::Receiver<Reply>) {
    let mut stock: Vec<(Password, Verifier)> = Vec::with_capacity(STOCK);
    loop {
        let next = if stock.len() + pgua_scram::LANES > STOCK {
            requests
                .recv()
                .map_err(|_| mpsc::TryRecvError::Disconnected)
        } else {
            requests.try_recv()
        };
        match next {
            Ok(reply) => {
                if stock.is_empty() {
                    refill(&mut stock);
                }
                let pair = stock.pop().expect("the stock was just refilled");
                // A caller that is gone leaves only its own password unused.
                let _ = reply.send(pair);
            }
            Err(mpsc::TryRecvError::Empty) => refill(&mut stock),
            Err(mpsc::TryRecvError::Disconnected) => return,
        }
    }
}

/// One batch of [`pgua_scram::LANES`] new pairs onto the stock.
fn refill(stock: &mut Vec<(Password, Verifier)>) {
    let passwords: Vec<Password> = (0..pgua_scram::LANES)
        .map(|_| Password::generate())
        .collect();
    let verifiers = Password::scram_verifiers(&passwords);
    stock.extend(passwords.into_iter().zip(verifiers));
}
