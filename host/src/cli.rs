//! The `plinth` command line: `serve`, `check` and `plugin inspect`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::routes::RouteTable;
use crate::runtime::{Runtime, grants};

/// plinth hosts application features as sandboxed WebAssembly components
/// behind a hardened HTTP edge.
#[derive(Debug, Parser)]
#[command(name = "plinth", version)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the deployment a config file describes, until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Build the plugins the config names a `source` for, serve, and rebuild
    /// and swap a plugin when its source changes (build errors are printed;
    /// the running version keeps serving). For development.
    Dev(ServeArgs),
    /// Validate a config and load every component, without serving or
    /// touching data; exits non-zero on the first problem.
    Check {
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Work with route policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with form definitions and their messages.
    #[command(subcommand)]
    Forms(FormsCommand),
    /// Work with the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Sign-in through external providers.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Back up, verify and restore a data directory.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Look at a data directory without reading its values.
    #[command(subcommand)]
    Data(DataCommand),
    /// Migrate plugins' stored data between their data versions (the
    /// server stopped: the database allows one process).
    Migrate {
        /// What to do.
        #[command(subcommand)]
        action: MigrateAction,
        /// The config file (plinth.toml).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// The data directory, instead of `storage.path`.
        #[arg(long, global = true)]
        data: Option<PathBuf>,
    },
    /// Operator actions on accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Start something new.
    #[command(subcommand)]
    New(NewCommand),
}

/// What `plinth new` creates.
#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A plugin (a Rust crate on the kit, or a JavaScript or Python module):
    /// a first route and its test, a plinth.toml that serves it, and its
    /// policy rules.
    Plugin {
        /// The plugin's name: a-z, 0-9 and `-`; also its crate and URL prefix.
        name: String,
        /// Where to create it (default: ./NAME); must not exist.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plinth kit to depend on, or whose WIT to copy (default: the one
        /// this binary was built with).
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../kit"))]
        kit: PathBuf,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Language,
    },
}

/// What `serve` and `dev` serve, and where.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file (plinth.toml).
    #[arg(long)]
    config: PathBuf,
    /// Listen on this address instead of `server.listen` (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Keep data in this directory instead of `storage.path`.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Admin subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Invite someone (such as the first admin) through the accounts
    /// plugin's own invite path, as the `cli` actor, and print the invitation.
    /// The server must be stopped: the database allows one process.
    Invite {
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
        /// Use this data directory instead of `storage.path`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The address to invite.
        #[arg(long)]
        email: String,
        /// Roles the account gets, comma-separated (such as `admin`).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
    },
}

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print route × method × required access; fails when any plugin route
    /// has no rule.
    Check {
        /// The config file (plinth.toml) naming the policy file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Forms subcommands.
#[derive(Debug, Subcommand)]
pub enum FormsCommand {
    /// Lint every plugin's messages (each enabled locale has every message
    /// of the default one, with the same placeholders and all its plural
    /// forms) and form definitions (`{id}.form.json` assets: valid, and
    /// every message they show exists in every locale). A deployment that
    /// fails it is refused at start and at reload.
    Lint {
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

/// Migration subcommands. Each plugin's steps are its component's
/// (`plinth:platform/migrations`) with their files in its `migrations`
/// directory.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// The host's data version and each plugin's, its component's, and the
    /// steps applied (with their checksums, backup and digests).
    Status,
    /// Check the step files against the components (and this binary's host
    /// steps) and run every fixture through its conversions; applied steps
    /// whose file changed are named with both checksums. Non-zero on any
    /// problem.
    Lint,
    /// On a copy of a fresh backup: up, the plugin's check of every record,
    /// down (must give the backup's data back), up again (must give the same
    /// result); the receipt is what `apply` asks for.
    Rehearse {
        /// The plugin.
        plugin: String,
    },
    /// Back up, then convert the plugin's data up to its component's
    /// version into a new namespace; the old data stays until `complete`.
    Apply {
        /// The plugin.
        plugin: String,
        /// Apply without a matching rehearsal receipt, for this reason (audited).
        #[arg(long = "override")]
        override_reason: Option<String>,
    },
    /// Remove the data the last step started from.
    Complete {
        /// The plugin.
        plugin: String,
    },
    /// Go back to the data the last step started from, as it was.
    Abort {
        /// The plugin.
        plugin: String,
        /// Go back even though the data was written to since `apply` (those
        /// writes are lost).
        #[arg(long)]
        force: bool,
    },
    /// Back up, then convert a completed plugin's data down to `--to` with
    /// its steps' down conversions; with `--host`, the host's own data (for
    /// running an older plinth on it).
    Down {
        /// The plugin.
        #[arg(required_unless_present = "host")]
        plugin: Option<String>,
        /// The host's own data (its steps in `migrations/`) instead of a plugin's.
        #[arg(long, conflicts_with = "plugin")]
        host: bool,
        /// The data version to go to.
        #[arg(long)]
        to: u32,
    },
}

/// Data subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Each namespace's key families and the shapes of their values (field
    /// names and types, never values), with digests to compare between
    /// environments. The server must be stopped (a running one answers
    /// `GET /admin/data/shape`).
    Shape {
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
        /// The data directory, instead of `storage.path`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Backup subcommands. A running server takes backups itself (`POST
/// /admin/backups`), since the database allows one process.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up a data directory no server is using into `storage.backups`
    /// (or `--dir`); prints the file.
    Create {
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
        /// The data directory, instead of `storage.path`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Write the backup here instead of `storage.backups`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List the backups in `storage.backups` (or `--dir`).
    List {
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
        /// Look here instead of `storage.backups`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check every digest of a backup file, naming what is damaged; with
    /// `--config`, also that the deployment's key wrote it.
    Verify {
        /// The backup file.
        file: PathBuf,
        /// The config file (plinth.toml), for `audit.key_file`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Restore a backup as the data directory (the server must be
    /// stopped): written beside it, checked (digests, the audit chain under
    /// `audit.key_file`), then swapped in; the replaced directory is kept
    /// beside it as `{data}.replaced-{time}`.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
        /// The data directory, instead of `storage.path`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// Audit subcommands. Both read the key and the data directory from the
/// config; the server must be stopped (the database allows one process).
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the keyed hash chain of the audit log; names the first break.
    Verify {
        /// The config file (plinth.toml): `storage.path` and `audit.key_file`.
        #[arg(long)]
        config: PathBuf,
        /// The data directory, instead of `storage.path`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Seal a log written before audit keys with the configured key, after
    /// verifying its unkeyed chain; only for a log you know is genuine.
    Seal {
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
        /// The data directory, instead of `storage.path`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// Sign-in provider subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// The providers' baselines (what the drift monitor compares them with).
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Switch credentials-only emergency mode on or off with the server
    /// stopped (when no admin can sign in to do it over HTTP).
    Emergency {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        switch: String,
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
        /// The data directory, instead of `storage.path`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Why (audited); required to switch it on.
        #[arg(long)]
        reason: Option<String>,
        /// How long it stays on (`"2h"`; default `auth.emergency.max_duration`).
        #[arg(long)]
        duration: Option<String>,
    },
}

/// Baseline subcommands.
#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Probes each provider (or one) and accepts what it does now as its
    /// baseline, so that a provider failing closed on drift signs people
    /// in again. The server must be stopped; a running one takes
    /// `POST /admin/auth/providers/{name}/baseline`.
    Accept {
        /// The config file (plinth.toml).
        #[arg(long)]
        config: PathBuf,
        /// The data directory, instead of `storage.path`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
    },
}

/// Plugin subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a component's imports and exports and the grants it needs.
    Inspect {
        /// The component file (.wasm).
        file: PathBuf,
    },
}

/// Sets up logging to stderr; `RUST_LOG` filters (default `info`). Lines
/// are written by a thread of their own (`log_writer`), so a request never
/// waits on the terminal or a pipe; keep the returned guard alive, and drop
/// it to write the last lines at exit.
pub fn init_logging(format: LogFormat) -> std::io::Result<crate::log_writer::LogGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = crate::log_writer::start(std::io::stderr())?;
    // Colour only for a person at a terminal who has not asked for none
    // (NO_COLOR): escape codes in a log file are noise to every reader and
    // tool, and cost formatting per line.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
    Ok(guard)
}

/// Runs a parsed command.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(ServeArgs { config, listen, data }) => serve(&config, listen, data).await,
        Command::Dev(ServeArgs { config, listen, data }) => dev(&config, listen, data).await,
        Command::Check { config } => check(&config).await,
        Command::Plugin(PluginCommand::Inspect { file }) => inspect(&file).await,
        Command::Policy(PolicyCommand::Check { config }) => policy_check(&config).await,
        Command::Forms(FormsCommand::Lint { config }) => forms_lint(&config),
        Command::Backup(command) => backup(command).await,
        Command::Data(DataCommand::Shape { config, data, json }) => data_shape(&config, data, json),
        Command::Migrate { action, config, data } => {
            let config = config.ok_or_else(|| anyhow::anyhow!("`plinth migrate` needs --config plinth.toml"))?;
            migrate(action, &config, data).await
        }
        Command::Auth(AuthCommand::Baseline(BaselineCommand::Accept { config, data, provider })) => {
            accept_baselines(&config, data, provider).await
        }
        Command::Auth(AuthCommand::Emergency { switch, config, data, reason, duration }) => {
            emergency_switch(&config, data, switch == "on", reason, duration).await
        }
        Command::Audit(AuditCommand::Verify { config, data }) => audit_check(&config, data, false).await,
        Command::Audit(AuditCommand::Seal { config, data }) => audit_check(&config, data, true).await,
        Command::New(NewCommand::Plugin { name, dir, kit, lang }) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            for file in crate::scaffold::new_plugin(&name, &dir, &kit, lang)? {
                println!("created {}", file.display());
            }
            let steps = match lang {
                crate::scaffold::Language::Rust => {
                    "cargo test && cargo build --release --target wasm32-wasip2 --target-dir target".to_owned()
                }
                crate::scaffold::Language::Js => "npm install && npm run build && npm test".to_owned(),
                crate::scaffold::Language::Python => format!(
                    "python3 -m venv .venv && .venv/bin/pip install componentize-py=={} && .venv/bin/componentize-py \
                     --wit-path wit --world component componentize app --output {name}.wasm && python3 -m unittest",
                    crate::scaffold::COMPONENTIZE_PY_VERSION
                ),
            };
            println!("next: cd {} && {steps} && plinth serve --config plinth.toml", dir.display());
            Ok(())
        }
        Command::Admin(AdminCommand::Invite { config, data, email, roles }) => {
            admin_invite(&config, data, &email, roles).await
        }
    }
}

async fn policy_check(file: &Path) -> anyhow::Result<()> {
    let (config, routes) = served(file).await?;
    let rows = config.policy.matrix(&routes, |served| config.plugins[served.plugin].name.clone());
    println!("{:<8} {:<40} {:<28} {:<16} plugin", "method", "path", "access", "class");
    for row in &rows {
        let access = if row.access.is_empty() {
            "NO RULE".to_owned()
        } else {
            row.access.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and ")
        };
        println!("{:<8} {:<40} {:<28} {:<16} {}", row.method, row.path, access, row.class, row.plugin);
    }
    for rule in config.policy.unused_rules(&routes) {
        println!("warning: rule `{}` in {} matches no route", rule.route, config.policy.source().display());
    }
    let gaps = rows.iter().filter(|r| r.access.is_empty()).count();
    anyhow::ensure!(gaps == 0, "{gaps} route(s) without a rule in {}", config.policy.source().display());
    println!("ok: {} rules cover {} routes of {}", config.policy.rules().len(), rows.len(), file.display());
    Ok(())
}

fn forms_lint(file: &Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    let locales = Arc::new(
        crate::i18n::Locales::from_config(&config.i18n)
            .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?,
    );
    let mut failed = 0;
    for entry in &config.plugins {
        match crate::app::PluginFiles::read(entry, locales.clone()) {
            Ok(files) => {
                let (forms, _) = crate::i18n::forms::lint(&files.assets, files.messages.as_deref());
                let messages = if files.messages.is_some() { "messages" } else { "no messages" };
                println!("ok: plugin `{}`: {messages}, {forms} form definition(s)", entry.name);
            }
            Err(e) => {
                failed += 1;
                println!("{e:#}");
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} plugin(s) fail the lint");
    println!("ok: locales {}", locales.names().join(", "));
    Ok(())
}

/// `plinth backup …`.
async fn backup(command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create { config, data, dir } => {
            let config = load_config(&config, None, data)?;
            let path = &config.storage.path;
            let storage: Arc<dyn crate::storage::Storage> =
                Arc::new(crate::storage::SledStorage::open(path).with_context(|| {
                    format!("opening {} (if a server is running on it, ask it: POST /admin/backups)", path.display())
                })?);
            let blobs =
                Arc::new(crate::blobs::Blobs::open(path.join("blobs"), storage.clone(), &config.scanner).await?);
            let key = crate::audit::AuditKey::load_or_create(&config.audit.key_file)?;
            let backups = crate::backup::Backups::new(
                dir.unwrap_or_else(|| config.storage.backups_dir()),
                crate::backup::BackupKey::of(&key),
            );
            let id = backups.start()?;
            let summary = backups.take(&id, storage.as_ref(), &blobs).await?;
            println!(
                "ok: backup {} written to {} ({} bytes: {} namespaces, {} files)",
                summary.id,
                summary.file.display(),
                summary.bytes,
                summary.namespaces,
                summary.files
            );
            Ok(())
        }
        BackupCommand::List { config, dir } => {
            let config = load_config(&config, None, None)?;
            let key = crate::audit::AuditKey::load_or_create(&config.audit.key_file)?;
            let backups = crate::backup::Backups::new(
                dir.unwrap_or_else(|| config.storage.backups_dir()),
                crate::backup::BackupKey::of(&key),
            );
            for status in backups.list() {
                println!("{}", serde_json::to_string(&status)?);
            }
            Ok(())
        }
        BackupCommand::Verify { file, config } => {
            let key = match &config {
                Some(config) => {
                    let config = load_config(config, None, None)?;
                    Some(crate::backup::BackupKey::of(&crate::audit::AuditKey::load_or_create(&config.audit.key_file)?))
                }
                None => None,
            };
            let manifest = crate::backup::verify(&file, key.as_ref())?;
            println!(
                "ok: backup {} taken {}: {} namespaces and {} files match their digests{}",
                manifest.id,
                manifest.created,
                manifest.namespaces.len(),
                manifest.files.len(),
                if key.is_some() {
                    "; this deployment's key wrote it"
                } else {
                    " (who wrote it is checked with --config, by the deployment's key)"
                }
            );
            Ok(())
        }
        BackupCommand::Restore { file, config, data } => {
            let config = load_config(&config, None, data)?;
            anyhow::ensure!(
                config.audit.key_file.exists(),
                "audit.key_file {} does not exist: a backup's audit chain is checked with the key of the server \
                 that took it",
                config.audit.key_file.display()
            );
            let key = crate::audit::AuditKey::load_or_create(&config.audit.key_file)?;
            let restored = crate::backup::restore(&file, &config.storage.path, &key).await?;
            println!(
                "ok: backup {} taken {} restored into {}{}; the next start records it in the audit log",
                restored.manifest.id,
                restored.manifest.created,
                restored.data.display(),
                restored.replaced.map(|p| format!(" (the data it replaced is in {})", p.display())).unwrap_or_default()
            );
            Ok(())
        }
    }
}

/// `plinth data shape`.
fn data_shape(file: &Path, data: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    use crate::storage::Storage as _;
    let config = load_config(file, None, data)?;
    let path = &config.storage.path;
    let storage = crate::storage::SledStorage::open(path).with_context(|| {
        format!("opening {} (if a server is running on it, ask it: GET /admin/data/shape)", path.display())
    })?;
    let shapes = crate::shape::of(storage.snapshot()?.as_ref())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&shapes)?);
        return Ok(());
    }
    for namespace in shapes {
        println!("{} {}", namespace.namespace, namespace.digest);
        for family in namespace.families {
            println!("  {} ({} records) {}", family.family, family.records, family.digest);
            for (shape, records) in family.shapes {
                println!("    {records} × {shape}");
            }
            if family.more > 0 {
                println!("    … and {} more shapes", family.more);
            }
        }
    }
    Ok(())
}

/// `plinth migrate …`.
async fn migrate(action: MigrateAction, file: &Path, data: Option<PathBuf>) -> anyhow::Result<()> {
    use crate::migrations::run::{PluginMigrations, Workbench};
    let config = load_config(file, None, data)?;
    let path = &config.storage.path;
    let storage: Arc<dyn crate::storage::Storage> = Arc::new(
        crate::storage::SledStorage::open(path)
            .with_context(|| format!("opening {} (is a server still running on it? stop it first)", path.display()))?,
    );
    let bench = Workbench::offline(&config, storage).await?;
    let runtime = Runtime::new(4, Some(config.storage.compiled_dir()))?;
    let plugin = |name: &str| {
        config
            .plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| anyhow::anyhow!("{}: no plugin `{name}`", config.source.display()))
    };
    match action {
        MigrateAction::Status | MigrateAction::Lint => {
            let mut problems = host_status(&bench, matches!(action, MigrateAction::Status)).await?;
            for entry in &config.plugins {
                let p = PluginMigrations::load(&runtime, entry, &bench.ledger).await?;
                let waiting = match (&p.window, p.state.previous) {
                    (Some(w), _) => format!(
                        ", in a window with version {} (backfill {} of {} records{})",
                        w.to,
                        w.copied,
                        w.total,
                        w.failure.as_ref().map(|f| format!(", halted: {f}")).unwrap_or_default()
                    ),
                    (None, Some(v)) => format!(", version {v} kept until `complete`"),
                    (None, None) => String::new(),
                };
                println!(
                    "plugin `{}`: data at version {}{waiting}; its component serves version {}",
                    p.name,
                    p.state.version,
                    p.version()
                );
                if matches!(action, MigrateAction::Status) {
                    for a in p.in_effect() {
                        println!("{}", applied_line(a, "converted"));
                    }
                }
                for problem in &p.problems {
                    problems += 1;
                    println!("  {problem}");
                }
            }
            anyhow::ensure!(problems == 0 || matches!(action, MigrateAction::Status), "{problems} problem(s)");
            Ok(())
        }
        MigrateAction::Rehearse { plugin: name } => {
            let p = PluginMigrations::load(&runtime, plugin(&name)?, &bench.ledger).await?;
            let r = bench.rehearse(&p).await?;
            println!(
                "ok: plugin `{name}` rehearsed {} → {} on backup {}: {} records converted, down gave the data back, up \
                 twice gave one result; {} ms, peak {} of {} quota bytes; receipt {}",
                r.from, r.to, r.backup, r.converted, r.duration_ms, r.peak_bytes, r.quota_bytes, r.id
            );
            Ok(())
        }
        MigrateAction::Apply { plugin: name, override_reason } => {
            let p = PluginMigrations::load(&runtime, plugin(&name)?, &bench.ledger).await?;
            let applied = bench.apply(&p, "cli", override_reason.as_deref()).await?;
            for a in &applied {
                println!(
                    "ok: plugin `{name}` step {} {}: {} records ({} converted), backup {}",
                    a.to, a.name, a.records, a.converted, a.backup
                );
            }
            println!(
                "the data it started from is kept until `plinth migrate complete {name}` (`abort` goes back to it)"
            );
            Ok(())
        }
        MigrateAction::Complete { plugin: name } => {
            let p = PluginMigrations::load(&runtime, plugin(&name)?, &bench.ledger).await?;
            if p.window.is_some() {
                let kept = close_window(&bench, &name, true).await?;
                println!("ok: plugin `{name}`: data at version {kept}");
                return Ok(());
            }
            bench.complete(&p).await?;
            println!("ok: plugin `{name}`: data at version {}", p.state.version);
            Ok(())
        }
        MigrateAction::Abort { plugin: name, force } => {
            let p = PluginMigrations::load(&runtime, plugin(&name)?, &bench.ledger).await?;
            if p.window.is_some() {
                let kept = close_window(&bench, &name, false).await?;
                println!("ok: plugin `{name}`: back at version {kept}");
                return Ok(());
            }
            bench.abort(&p, force).await?;
            println!("ok: plugin `{name}`: back at version {}", p.state.previous.unwrap_or_default());
            Ok(())
        }
        MigrateAction::Down { host: true, to, .. } => {
            bench.host_down(crate::migrations::host::STEPS, to).await?;
            println!("ok: the host's data is at version {to}; a plinth that knows no later step can serve it");
            Ok(())
        }
        MigrateAction::Down { plugin: name, to, .. } => {
            let name = name.expect("clap requires a plugin without --host");
            let p = PluginMigrations::load(&runtime, plugin(&name)?, &bench.ledger).await?;
            bench.down(&p, to).await?;
            println!(
                "ok: plugin `{name}`: data at version {to}; configure its component for that version, then `complete`"
            );
            Ok(())
        }
    }
}

/// One applied step as `plinth migrate status` prints it; `converted`
/// names what its count of changed records is.
fn applied_line(a: &crate::migrations::Applied, converted: &str) -> String {
    format!(
        "  step {} {}: applied {} by {} after backup {}; {} records ({} {converted}); canonical {}, semantic {}; \
         digest {} → {}",
        a.to,
        a.name,
        a.at,
        a.by,
        a.backup,
        a.records,
        a.converted,
        a.canonical,
        a.semantic,
        a.before.blake3,
        a.after.blake3
    )
}

/// Prints where the host's data stands against this binary's steps (and,
/// with `applied`, each step applied); the number of problems.
async fn host_status(bench: &crate::migrations::run::Workbench, applied: bool) -> anyhow::Result<usize> {
    use crate::migrations::host::{STEPS, check_all};
    let checked = match check_all(STEPS) {
        Ok(checked) => checked,
        Err(e) => {
            println!("host: {e:#}");
            return Ok(1);
        }
    };
    let newest = STEPS.len();
    let version = bench.ledger.host_state().await?.map(|s| s.version);
    let at = match version {
        Some(v) if v as usize > newest => format!("at version {v}, newer than this plinth knows ({newest}): refused"),
        Some(v) if v as usize == newest => format!("at version {v}"),
        Some(v) => format!("at version {v}; the next start applies steps {} to {newest}", v + 1),
        None => format!("not yet started by a plinth with host steps; the next start brings it to {newest}"),
    };
    println!("host: data {at}");
    let mut problems = usize::from(version.is_some_and(|v| v as usize > newest));
    for a in bench.ledger.host_applied().await? {
        let edited = a.to.checked_sub(1).and_then(|i| checked.get(i as usize)).filter(|c| c.canonical != a.canonical);
        if let Some(now) = edited {
            problems += 1;
            println!(
                "  migrations/{}: host step {} was applied with canonical checksum {}, this build's file has {}",
                a.file, a.to, a.canonical, now.canonical
            );
        }
        if applied {
            println!("{}", applied_line(&a, "edits"));
        }
    }
    Ok(problems)
}

/// Closes a plugin's migration window with the server stopped (nothing
/// serves either version), keeping the newer data or the older.
async fn close_window(
    bench: &crate::migrations::run::Workbench,
    plugin: &str,
    keep_newer: bool,
) -> anyhow::Result<u32> {
    let windows = crate::migrations::online::Windows::new(bench.storage.clone(), Arc::default(), 0);
    let window = windows.close(bench, plugin, keep_newer, &[]).await?;
    Ok(if keep_newer { window.to } else { window.from })
}

/// `plinth auth emergency on|off`.
async fn emergency_switch(
    file: &Path,
    data: Option<PathBuf>,
    on: bool,
    reason: Option<String>,
    duration: Option<String>,
) -> anyhow::Result<()> {
    use crate::storage::Storage as _;
    let config = load_config(file, None, data)?;
    let path = &config.storage.path;
    let storage = Arc::new(crate::storage::SledStorage::open(path).with_context(|| {
        format!(
            "opening {} (is a server still running on it? admins switch it with /admin/auth/emergency)",
            path.display()
        )
    })?);
    let key = crate::audit::AuditKey::load_or_create(&config.audit.key_file)?;
    let audit = Arc::new(crate::audit::AuditLog::open(storage.as_ref(), None, key).await?);
    let lifetimes = crate::identity::Lifetimes {
        idle: config.sessions.idle_timeout.0,
        absolute: config.sessions.absolute_timeout.0,
    };
    let identity = Arc::new(crate::identity::Identity::open(storage.as_ref(), audit.clone(), lifetimes)?);
    let mode = crate::oidc::emergency::Emergency::open(&config.auth, storage.as_ref(), audit, identity).await?;
    if on {
        let reason = reason.ok_or_else(|| anyhow::anyhow!("--reason says why (it is audited)"))?;
        let seconds = match duration {
            Some(text) => humantime::parse_duration(&text)
                .map_err(|e| anyhow::anyhow!("--duration `{text}`: {e} (such as \"2h\")"))?
                .as_secs(),
            None => config.auth.emergency.max_duration.0.as_secs(),
        };
        let state = mode.switch_on_offline(&reason, seconds).await?;
        println!("ok: emergency mode is on until {} (Unix seconds)", state.until.unwrap_or_default());
    } else {
        let envelope = crate::audit::Envelope { actor: crate::audit::Actor::Cli, ..crate::audit::Envelope::system() };
        let revoked = mode.end(&envelope, &reason.unwrap_or_else(|| "ended from the command line".to_owned())).await?;
        println!("ok: emergency mode is off; {revoked} emergency session(s) revoked");
    }
    storage.flush().await?;
    Ok(())
}

/// `plinth auth baseline accept`.
async fn accept_baselines(file: &Path, data: Option<PathBuf>, only: Option<String>) -> anyhow::Result<()> {
    use crate::storage::Storage as _;
    let config = load_config(file, None, data)?;
    let path = &config.storage.path;
    let storage = crate::storage::SledStorage::open(path).with_context(|| {
        format!(
            "opening {} (is a server still running on it? it takes POST /admin/auth/providers/NAME/baseline)",
            path.display()
        )
    })?;
    let key = crate::audit::AuditKey::load_or_create(&config.audit.key_file)?;
    let audit = Arc::new(crate::audit::AuditLog::open(&storage, None, key).await?);
    let oidc = crate::oidc::Oidc::open(&config, &storage, (audit, Arc::default()), None)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{}: [auth] names no provider", config.source.display()))?;
    let names: Vec<String> = oidc.providers().map(|p| p.name.clone()).collect();
    if let Some(name) = &only {
        anyhow::ensure!(
            names.contains(name),
            "{}: no provider `{name}` (there are {names:?})",
            config.source.display()
        );
    }
    let envelope = crate::audit::Envelope { actor: crate::audit::Actor::Cli, ..crate::audit::Envelope::system() };
    for name in names.iter().filter(|n| only.as_ref().is_none_or(|o| o == *n)) {
        let status = oidc.probe(name).await?;
        if let Some(probe) = &status.last_probe
            && !probe.problems.is_empty()
        {
            println!("provider `{name}`: the probe found: {}", probe.problems.join("; "));
        }
        let baseline = oidc.accept_baseline(name, &envelope).await?;
        let seen = &baseline.observation;
        println!(
            "ok: provider `{name}`: baseline accepted (issuer {}, algorithms {:?}, S256 {}, hosts {:?})",
            seen.issuer, seen.algorithms, seen.s256, seen.hosts
        );
    }
    storage.flush().await?;
    Ok(())
}

/// `plinth audit verify` and, with `seal`, `plinth audit seal`.
async fn audit_check(file: &Path, data: Option<PathBuf>, seal: bool) -> anyhow::Result<()> {
    use crate::storage::Storage as _;
    let config = load_config(file, None, data)?;
    let data = &config.storage.path;
    let storage = crate::storage::SledStorage::open(data)
        .with_context(|| format!("opening {} (is a server still running on it?)", data.display()))?;
    let key = crate::audit::AuditKey::load_or_create(&config.audit.key_file)?;
    let log = crate::audit::AuditLog::open(&storage, None, key).await?;
    let report = if seal { log.seal_unkeyed().await? } else { log.verify().await? };
    storage.flush().await?;
    match report.broken {
        None if seal => {
            println!(
                "ok: {} audit records verified; the chain is sealed with {}",
                report.records,
                config.audit.key_file.display()
            );
            Ok(())
        }
        None => {
            println!("ok: {} audit records, chain intact", report.records);
            Ok(())
        }
        Some(link) => anyhow::bail!(
            "audit chain broken at record {}: {} ({} records before it verified)",
            link.id,
            link.reason,
            report.records
        ),
    }
}

/// Loads a config and applies the command-line overrides.
pub fn load_config(file: &Path, listen: Option<SocketAddr>, data: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut config = Config::load(file)?;
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(data) = data {
        config.storage.path = data;
    }
    Ok(config)
}

async fn serve(file: &Path, listen: Option<SocketAddr>, data: Option<PathBuf>) -> anyhow::Result<()> {
    let source = crate::app::ConfigSource { file: file.to_owned(), data, listen };
    let config = source.load()?;
    crate::server::raise_open_file_limit(config.server.max_connections);
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let app = Arc::new(crate::App::build_from(config, Some(source)).await?);
    tokio::spawn(reload_on_sighup(app.clone()));
    crate::watch::spawn(app.clone())?;
    // Scripts and tests read the bound address (port 0 picks one) from here.
    println!("listening on {}", listener.local_addr()?);
    crate::run(listener, app, shutdown_signal()).await
}

async fn dev(file: &Path, listen: Option<SocketAddr>, data: Option<PathBuf>) -> anyhow::Result<()> {
    let config = crate::dev::load(file, data.as_deref())?;
    let first = config.plugins.clone();
    tokio::task::spawn_blocking(move || {
        for plugin in &first {
            if let Err(e) = crate::dev::build(plugin) {
                eprintln!("dev: {e:#}");
            }
        }
    })
    .await?;
    crate::dev::watch(config)?;
    serve(file, listen, data).await
}

/// Reloads the config on every SIGHUP.
async fn reload_on_sighup(app: Arc<crate::App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).expect("install the SIGHUP handler");
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received; reloading");
        app.reload(&crate::audit::Envelope::system()).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

async fn check(file: &Path) -> anyhow::Result<()> {
    let (config, routes) = served(file).await?;
    for (route, served) in routes.iter() {
        println!("route: {route:<48} plugin `{}`", config.plugins[served.plugin].name);
    }
    println!("ok: {} ({} plugins)", file.display(), config.plugins.len());
    Ok(())
}

/// Loads a config and its components (compiled, checked, not bound to
/// storage) and returns the routes they would serve.
async fn served(file: &Path) -> anyhow::Result<(Config, RouteTable<crate::app::ServedRoute>)> {
    let config = Config::load(file)?;
    let runtime = Runtime::new(1, None)?;
    let mut declared = Vec::with_capacity(config.plugins.len());
    for plugin in &config.plugins {
        let prepared = runtime.prepare(plugin).await?;
        println!("ok: plugin `{}` sha256:{}", plugin.name, prepared.digest);
        declared.push(prepared.routes);
    }
    for worker in &config.workers {
        let bytes = tokio::fs::read(&worker.component)
            .await
            .with_context(|| format!("worker `{}`: reading {}", worker.name, worker.component.display()))?;
        let prepared = runtime.prepare_worker(worker, bytes.clone(), crate::runtime::digest(&bytes)).await?;
        println!("ok: worker `{}` sha256:{}", worker.name, prepared.digest);
    }
    let declared: Vec<&[crate::routes::Route]> = declared.iter().map(Vec::as_slice).collect();
    let routes = crate::app::served_routes(&config, &declared)?;
    Ok((config, routes))
}

async fn inspect(file: &Path) -> anyhow::Result<()> {
    let runtime = Runtime::new(1, None)?;
    let (component, digest) = runtime.compile("inspect", file).await?;
    let surface = grants::surface(runtime.engine(), &component);
    println!("component: {}", file.display());
    println!("sha256: {digest}");
    if surface.exports.iter().any(|e| e == grants::WORK_EXPORT) {
        println!("a worker (exports `{}`): configure it under [[workers]]", grants::WORK_EXPORT);
        for import in &surface.imports {
            println!("  imports {import}");
        }
        grants::check_worker(&surface)?;
        println!("ok: it reaches only its job's blobs");
        return Ok(());
    }
    println!("imports:");
    let mut needed = Vec::new();
    let mut refused = 0;
    for import in &surface.imports {
        let need = grants::need_of(import);
        println!("  {import}  ({need})");
        match need {
            grants::Need::Grant(g) if !needed.contains(&g) => needed.push(g),
            grants::Need::Refused(_) => refused += 1,
            _ => {}
        }
    }
    println!("exports:");
    for export in &surface.exports {
        println!("  {export}");
    }
    needed.sort();
    let needed: Vec<_> = needed.iter().map(|g| format!("\"{g}\"")).collect();
    let kind = grants::kind(&surface)?;
    println!("kind: {}", kind.describe());
    println!("grants needed: [{}]", needed.join(", "));
    anyhow::ensure!(refused == 0, "{refused} import(s) are never available to plugins");
    Ok(())
}

/// The route the accounts plugin serves invitations on.
const INVITE_ROUTE: &str = "/v1/accounts/invite";

async fn admin_invite(file: &Path, data: Option<PathBuf>, email: &str, roles: Vec<String>) -> anyhow::Result<()> {
    use crate::routes::Lookup;
    let config = load_config(file, None, data)?;
    let data_dir = config.storage.path.clone();
    let app = crate::App::build(config).await.with_context(|| {
        format!("starting against {} (stop the server first: the database allows one process)", data_dir.display())
    })?;
    let deployment = app.deployment.load_full();
    let Lookup::Found { target, params, .. } = deployment.routes.lookup("POST", INVITE_ROUTE) else {
        anyhow::bail!("no plugin serves POST {INVITE_ROUTE}; is the accounts plugin configured?");
    };
    let plugin = deployment.plugins[target.plugin].plugin.clone();
    let body = serde_json::json!({ "email": email, "roles": roles });
    let request = crate::runtime::host::types::RequestData {
        method: "POST".into(),
        path: INVITE_ROUTE.into(),
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: bytes::Bytes::from(body.to_string()).into(),
        trace_id: crate::trace::generate(),
        client_address: "cli".into(),
        route: target.declared.clone(),
        params,
        principal: Some(crate::runtime::bindings::types::Principal {
            account_id: "cli".into(),
            roles: vec![crate::policy::ADMIN_ROLE.into()],
            session_id: String::new(),
        }),
        csrf_token: None,
        revalidation: false,
    };
    let output = plugin.handle(request, "plinth-cli".into(), crate::audit::Actor::Cli, Arc::default()).await?;
    let answer = String::from_utf8_lossy(&output.response.body);
    anyhow::ensure!(output.response.status == 201, "the invitation was refused ({}): {answer}", output.response.status);
    // The body (with the link) is read while queued: delivery drops it.
    let queued = app.outbox.list(crate::outbox::State::Queued, crate::storage::MAX_SCAN_PAGE).await?;
    let invitation = queued.into_iter().rev().find(|m| m.kind == "invite" && m.to == email.trim().to_lowercase());
    app.outbox.deliver_due().await?;
    println!("invited {email} with roles [{}]", roles.join(", "));
    match invitation.and_then(|m| m.body) {
        Some(body) => println!("{}", body.trim_end()),
        None => println!("the invitation is queued for delivery"),
    }
    Ok(())
}
