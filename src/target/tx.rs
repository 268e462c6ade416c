//! Admin transactions in as few round trips as their statements allow.
//!
//! tokio-postgres sends a request when its future is first polled and matches replies in
//! order, so requests polled together travel together: `BEGIN`, the role's advisory lock
//! and the catalog reads that follow it go out at once and PostgreSQL runs them one after
//! the other (each read still takes its snapshot after the lock is granted). The plan and
//! `COMMIT` then go as one simple-query batch. Together a create costs two round trips
//! instead of five or six.

use std::future::Future;
use std::ops::Deref;

use deadpool_postgres::Object;
use futures_util::FutureExt;

use crate::error::Result;

/// An open transaction on a pooled admin connection; rolled back unless committed.
pub struct AdminTx<'c> {
    conn: &'c Object,
    open: bool,
}

impl<'c> AdminTx<'c> {
    /// Begins a transaction and runs `first` (reads that use `conn`, e.g. a lock and a
    /// state) in the same round trip: `BEGIN` is sent before `first` is polled.
    pub async fn begin<T>(
        conn: &'c Object,
        first: impl Future<Output = Result<T>>,
    ) -> Result<(Self, T)> {
        // Rolled back on every early return, like any unfinished transaction, and when this
        // future is dropped before it is done: `BEGIN` may have run by then.
        let tx = Self { conn, open: true };
        let (begun, read) = futures_util::join!(conn.batch_execute("BEGIN"), first);
        begun?;
        let read = read?;
        Ok((tx, read))
    }

    /// Runs `batch` (statements, each ending in `;`) and `COMMIT` in one round trip. When a
    /// statement fails, PostgreSQL skips the rest, COMMIT included, and the transaction is
    /// rolled back as this value is dropped: nothing of the batch stays.
    pub async fn commit_with(mut self, batch: &str) -> Result<(), tokio_postgres::Error> {
        let mut sql = String::with_capacity(batch.len() + 7);
        sql.push_str(batch);
        sql.push_str("COMMIT");
        self.conn.batch_execute(&sql).await?;
        self.open = false;
        Ok(())
    }
}

impl AdminTx<'_> {
    /// The connection as tokio-postgres's client, for reads written against it.
    pub fn client(&self) -> &tokio_postgres::Client {
        self.conn
    }
}

impl Deref for AdminTx<'_> {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.conn
    }
}

impl Drop for AdminTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // Polled once, the request is queued on the connection and runs before anything
            // the connection's next user sends (what tokio-postgres's own transactions do on
            // drop); its answer is not waited for.
            let _ = self.conn.batch_execute("ROLLBACK").now_or_never();
        }
    }
}
