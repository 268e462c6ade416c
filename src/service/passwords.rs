//! New passwords and their verifiers, hashed on a thread of their own, several at once.
//!
//! A verifier is PBKDF2's 8,192 SHA-256 compressions, about half of a create's CPU. The
//! verifiers of requests that arrive together are computed side by side
//! ([`pgua_scram::verifiers`]) at about half the CPU each: the thread takes whatever is
//! waiting, up to [`pgua_scram::LANES`], and never waits for company, so a lone create is
//! not delayed. One thread is enough: it hashes some 3,500 verifiers a second on the
//! project's 2-core machine, more than a PostgreSQL server accepts new ones (the server
//! runs the same PBKDF2 on every `CREATE ROLE … PASSWORD`, to refuse an empty password).

use std::sync::{LazyLock, mpsc};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::plan::{Password, Verifier};

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

/// Answers requests as they come, each batch what was waiting.
fn hash(requests: &mpsc::Receiver<Reply>) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter().take(pgua_scram::LANES - 1));
        let passwords: Vec<Password> = batch.iter().map(|_| Password::generate()).collect();
        let verifiers = Password::scram_verifiers(&passwords);
        metrics::histogram!("pgua_verifier_batch_size").record(batch.len() as f64);
        for ((reply, password), verifier) in batch.into_iter().zip(passwords).zip(verifiers) {
            // A caller that is gone leaves only its own password unused.
            let _ = reply.send((password, verifier));
        }
    }
}
