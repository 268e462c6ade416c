//! `pg-user-api auth check-token < token.jwt`: what the service makes of a JWT.

use std::io::Read;

use anyhow::bail;
use clap::Subcommand;

use crate::auth::jwt::Verifier;
use crate::config::Config;

/// Commands about how callers authenticate.
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Explain a JWT read on standard input: which binding matches and its scopes, or which
    /// check or claim refuses it (its audience need not be the service's own). Fetches the
    /// issuer's keys as the server would; exits non-zero when the token would be refused.
    CheckToken,
}

/// Runs an auth command.
pub async fn run(cmd: AuthCommand, config: &Config) -> anyhow::Result<()> {
    match cmd {
        AuthCommand::CheckToken => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token)?;
            let verifier = Verifier::new(&config.auth.jwt)?;
            if !verifier.enabled() {
                bail!("no JWT issuer is configured ([[auth.jwt.issuers]] in --config)");
            }
            let explanation = verifier.explain(token.trim()).await;
            println!("{}", serde_json::to_string_pretty(&explanation)?);
            match explanation.refused {
                Some(r) => bail!("{r}"),
                None => Ok(()),
            }
        }
    }
}
