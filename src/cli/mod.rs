//! The command line: `pg-user-api serve | demo | seed | registry … | audit … | store … |
//! auth … | doctor | adopt | check-config`.

mod adopt;
mod audit;
mod auth;
pub mod demo;
mod doctor;
mod keys;
mod registry;
mod serve;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// Safe, idempotent, audited PostgreSQL user provisioning over HTTP.
#[derive(Parser, Debug)]
#[command(name = "pg-user-api", version, about)]
pub struct Cli {
    /// Store URL: sqlite://PATH (default sqlite://pg_registry.db) or postgres://….
    #[arg(long, env = "PGUA_STORE", global = true)]
    store: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "PGUA_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "PGUA_LOG_FORMAT", global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on (default 127.0.0.1:5000).
        #[arg(long, env = "PGUA_LISTEN")]
        listen: Option<String>,
    },
    /// Run the server against a throw-away local PostgreSQL; needs nothing configured.
    Demo {
        /// Address to listen on (default 127.0.0.1:5000).
        #[arg(long, env = "PGUA_LISTEN")]
        listen: Option<String>,
    },
    /// Create the store and add the original's sample registry entries (idempotent).
    Seed,
    /// Manage the registry of target databases.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check how callers authenticate (JWTs from trusted issuers).
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Print the argon2 hash of a password read on standard input, for `[[auth.users]]`.
    HashPassword,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `pg-user-api man > /usr/share/man/man1/pg-user-api.1`.
    Man,
    /// Print the OpenAPI document for this configuration's profiles, as `/api/openapi.json`.
    Openapi,
    /// Move the store between backends.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Validate the configuration and print what it means.
    CheckConfig,
    /// Check every registry entry: reachable, TLS, and what the admin role may do there.
    Doctor(doctor::DoctorArgs),
    /// Move users made under per-user grants to membership in their profile's group
    /// (dry run unless --apply).
    Adopt(adopt::AdoptArgs),
}

impl Cli {
    /// The configuration: file, then environment and flags on top.
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(store) = &self.store {
            config.store.clone_from(store);
        }
        if let Some(format) = self.log_format {
            config.log_format = format;
        }
        if let Command::Serve { listen: Some(l) } | Command::Demo { listen: Some(l) } =
            &self.command
        {
            config.listen.clone_from(l);
        }
        Ok(config)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = cli.config().and_then(|config| {
        crate::logging::init(config.log_format);
        let runtime = crate::startup::runtime(config.http.worker_threads)?;
        runtime.block_on(run(cli.command, config))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Validates the configuration, prints the effective settings and what each profile does.
fn check_config(config: &Config) -> anyhow::Result<()> {
    use crate::plan::profile::ParamKind;
    use crate::plan::{CreateFacts, NamePolicy, Password, SchemaFacts};

    config.validate()?;
    let mut shown = config.clone();
    shown.profiles.clear();
    shown.store = crate::store::redact_url(&config.store);
    println!("# configuration is valid; effective settings:\n");
    print!("{}", toml::to_string_pretty(&shown)?);
    let names = NamePolicy::new(&config.policy.name_pattern)?;
    let verifier = Password::generate().scram_verifier();
    let facts = CreateFacts {
        schemas: vec![SchemaFacts {
            name: "each_schema".into(),
            owners: vec!["its_owner".into()],
        }],
        valid_until: None,
        // Shown as on PostgreSQL 16 and later, where every profile uses its group.
        server_version_num: 170_000,
    };
    println!("\n# profiles (endpoint /api/v1/users/<name>)");
    for p in config.profiles().map_err(anyhow::Error::msg)?.iter() {
        println!("\n{} — {}", p.label(), p.description);
        let example = |k: &str| {
            Some(match p.params.get(k) {
                Some(ParamKind::Port) => "5432".to_owned(),
                _ => k.to_owned(),
            })
        };
        let params: Vec<String> = p
            .params
            .iter()
            .map(|(k, v)| format!("{k} ({v:?})"))
            .collect();
        println!("  params: {}", params.join(", "));
        let envs = if p.environments.is_empty() {
            "all".into()
        } else {
            p.environments.join(", ")
        };
        let prod = if p.non_production_only {
            "refused"
        } else {
            "allowed"
        };
        println!("  environments: {envs}; production: {prod}");
        let role = p.role_name(&names, example)?;
        let mut facts = facts.clone();
        for g in &p.grants {
            if let crate::plan::grants::Schemas::Named(list) = &g.schemas {
                for s in list {
                    facts.schemas.push(SchemaFacts {
                        name: s.clone(),
                        owners: vec!["its_owner".into()],
                    });
                }
            }
        }
        let group = crate::plan::groups::Group::for_profile(p, "target_db");
        println!("  group {} (created once, on first use):", group.name());
        for s in group.create(&facts.schemas).map_err(anyhow::Error::msg)? {
            println!("    {};", s.shown());
        }
        println!("  each user:");
        let plan = crate::plan::create_user(p, &role, "target_db", &verifier, &facts)
            .map_err(anyhow::Error::msg)?;
        for s in plan {
            println!("    {};", s.shown());
        }
    }
    Ok(())
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => serve::run(config).await,
        Command::Demo { .. } => demo::run(config).await,
        Command::Seed => registry::seed(&config).await,
        Command::Registry(cmd) => registry::run(cmd, &config).await,
        Command::Audit(cmd) => audit::run(cmd, &config).await,
        Command::Keys(cmd) => keys::run(cmd, &config).await,
        Command::Auth(cmd) => auth::run(cmd, &config).await,
        Command::HashPassword => keys::hash_password(),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "pg-user-api", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Openapi => {
            let profiles = config.profiles().map_err(anyhow::Error::msg)?;
            let names = crate::plan::NamePolicy::new(&config.policy.name_pattern)?;
            println!(
                "{}",
                crate::http::openapi(&profiles, &names).to_pretty_json()?
            );
            Ok(())
        }
        Command::Store(cmd) => store::run(cmd).await,
        Command::CheckConfig => check_config(&config),
        Command::Doctor(args) => doctor::run(args, &config).await,
        Command::Adopt(args) => adopt::run(args, &config).await,
    }
}
