//! `yunwei`: the one binary. Parses the command line, loads configuration, wires storage and the
//! web front together. Everything of substance lives in the library crates.

mod asset_cmd;
mod config;
mod demo;
mod demo_interfaces;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use yunwei_core::authz::{AdminPermission, AdminRole};
use yunwei_storage::secrets::SecretBox;
use yunwei_storage::{Clock, Db, Principal, users};

use crate::config::Config;

// mimalloc hands freed memory back to the operating system; with the system allocator the 19 MiB
// that each argon2id hash uses stayed resident per thread, tripling the idle server's memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "yunwei", version, about = "运维台 yunwei: government IT O&M contracts, run and proven")]
struct Cli {
    /// Configuration file (TOML). Default: ./yunwei.toml when present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://… (default: SQLite under the data directory).
    #[arg(long, global = true, env = "YUNWEI_DATABASE_URL")]
    database_url: Option<String>,
    /// Data directory (default ./yunwei-data).
    #[arg(long, global = true, env = "YUNWEI_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// PEM certificate chain: serve HTTPS with this certificate.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// A TLS-terminating reverse proxy sits in front of this server.
        #[arg(long)]
        behind_tls_proxy: bool,
        /// Load the demo contract and its users on first start.
        #[arg(long)]
        demo: bool,
    },
    /// Manage accounts from the console (first set-up, lost passwords).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write a consistent online snapshot of the SQLite database to FILE.
    Backup { file: PathBuf },
    /// Replace the SQLite database with a snapshot made by `yunwei backup` (stop the server first).
    Restore { file: PathBuf },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Contract files (TOML).
    Contract {
        #[command(subcommand)]
        command: ContractCommand,
    },
    /// Holiday calendars.
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// The asset ledger as sheets: import (.xlsx, .xls, .csv) and export (.xlsx).
    Asset {
        #[command(subcommand)]
        command: asset_cmd::AssetCommand,
    },
}

#[derive(Subcommand)]
enum ContractCommand {
    /// Check a contract file: every error with line, column and a hint (exit 1); otherwise a
    /// summary of its levels and clocks in plain words.
    Check { file: PathBuf },
    /// Create or update a contract from its file: prints what changes and the new version.
    Import { file: PathBuf },
    /// Print the current version of a contract's file.
    Export { code: String },
    /// Print the JSON Schema of the contract file format (for editors).
    Schema,
}

#[derive(Subcommand)]
enum CalendarCommand {
    /// Load one year of Chinese holidays and make-up workdays (holiday-cn JSON format), e.g. next
    /// year's once the State Council has published it.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account with a generated one-time password.
    Add {
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        email: String,
        /// system_admin, security_admin or audit_admin.
        #[arg(long)]
        admin_role: Option<String>,
    },
    /// Give an account a new one-time password and lift any lockout.
    ResetPassword {
        #[arg(long)]
        login: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the SM3 hash chain; exits 1 and names the first broken record if it was altered.
    Verify,
}

fn main() -> Result<()> {
    // One TLS crypto provider in the whole binary (ring); installed before anything uses rustls.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref()).context("reading configuration")?;
    if let Some(url) = cli.database_url {
        config.database_url = url;
    }
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    init_logging(&config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let code = runtime.block_on(run(cli.command, config))?;
    std::process::exit(code);
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("YUNWEI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn now_ms() -> i64 {
    Clock::default().now_ms()
}

/// The key that seals secrets at rest (from configuration, or a key file beside the database),
/// sealing new values with the configured cipher.
fn secret_box(config: &Config) -> Result<SecretBox> {
    let cipher = yunwei_storage::secrets::Cipher::parse(&config.secret_cipher).map_err(anyhow::Error::msg)?;
    Ok(secret_key(config)?.with_cipher(cipher))
}

fn secret_key(config: &Config) -> Result<SecretBox> {
    if !config.secret_key.is_empty() {
        return SecretBox::from_base64(&config.secret_key).map_err(|e| anyhow::anyhow!("secret_key: {e}"));
    }
    let path = config.data_dir.join("secret.key");
    if !path.exists() {
        if !config.database_url().starts_with("sqlite") {
            tracing::warn!(
                "no secret_key configured: created {}; every node sharing this PostgreSQL database needs the same key",
                path.display()
            );
        }
        std::fs::create_dir_all(&config.data_dir)?;
        write_private(&path, &SecretBox::generate_base64())?;
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    SecretBox::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn write_private(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

async fn open_db(config: &Config) -> Result<Db> {
    if config.database_url.is_empty() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    }
    let url = config.database_url();
    let db = Db::connect(&url, secret_box(config)?)
        .await
        .map_err(|e| anyhow::anyhow!("opening database {}: {e}", yunwei_storage::redact_url(&url)))?;
    Ok(db)
}

async fn run(command: Command, mut config: Config) -> Result<i32> {
    match command {
        Command::Serve { listen, tls_cert, tls_key, behind_tls_proxy, demo } => {
            if let Some(l) = listen {
                config.listen = l;
            }
            if tls_cert.is_some() {
                config.tls_cert = tls_cert;
                config.tls_key = tls_key;
            }
            config.behind_tls_proxy |= behind_tls_proxy;
            serve(config, demo).await
        }
        Command::User { command } => user_command(&config, command).await,
        Command::Audit { command: AuditCommand::Verify } => {
            let db = open_db(&config).await?;
            let report = yunwei_storage::audit::verify(&db).await?;
            match report.first_broken {
                None => {
                    println!(
                        "audit log intact: {} records, hash chain unbroken / 审计日志完整：{} 条记录",
                        report.checked, report.checked
                    );
                    Ok(0)
                }
                Some((seq, why)) => {
                    println!(
                        "audit log ALTERED: first broken record is #{seq}: {why} / 审计日志被篡改：第 {seq} 条记录校验失败"
                    );
                    Ok(1)
                }
            }
        }
        Command::Backup { file } => {
            let db = open_db(&config).await?;
            if file.exists() {
                bail!("{} exists; choose a new file name", file.display());
            }
            db.backup_sqlite(&file.to_string_lossy()).await?;
            db.audit_event(
                now_ms(),
                yunwei_storage::audit::AuditEntry::new(
                    Principal::local_operator(&os_user()).actor(),
                    "system.backup",
                    file.display().to_string(),
                ),
            )
            .await?;
            println!("backup written to {}", file.display());
            Ok(0)
        }
        Command::Restore { file } => restore(&config, &file).await,
        Command::Contract { command: ContractCommand::Check { file } } => contract_check(&file),
        Command::Contract { command: ContractCommand::Import { file } } => {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let db = open_db(&config).await?;
            let scope = Principal::local_operator(&os_user()).admin_scope(AdminPermission::ContractManage)?;
            match yunwei_storage::contract_files::import(&db, &scope, &bytes, now_ms()).await {
                Ok(o) if o.unchanged => println!("unchanged: version {} is already this file / 内容未变化", o.version),
                Ok(o) => {
                    let verb = if o.created { "created" } else { "updated" };
                    println!(
                        "{verb} contract {} as version {} / 已导入为第 {} 版",
                        o.contract_id, o.version, o.version
                    );
                    for line in &o.changes {
                        println!("  {line}");
                    }
                }
                Err(yunwei_storage::StoreError::ContractFile(diagnostics)) => {
                    for d in &diagnostics {
                        println!("{}:{d}", file.display());
                    }
                    println!("not imported: {} problem(s) / 未导入", diagnostics.len());
                    return Ok(1);
                }
                Err(e) => return Err(anyhow::anyhow!("{}", describe(e))),
            }
            Ok(0)
        }
        Command::Contract { command: ContractCommand::Schema } => {
            print!("{}", yunwei_core::contract::json_schema());
            Ok(0)
        }
        Command::Contract { command: ContractCommand::Export { code } } => {
            let db = open_db(&config).await?;
            let scope = Principal::local_operator(&os_user()).admin_scope(AdminPermission::ContractManage)?;
            print!(
                "{}",
                yunwei_storage::contract_files::export(&db, &scope, &code)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", describe(e)))?
            );
            Ok(0)
        }
        Command::Calendar { command: CalendarCommand::Import { file } } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let db = open_db(&config).await?;
            let scope = Principal::local_operator(&os_user()).admin_scope(AdminPermission::ConfigManage)?;
            let year = yunwei_storage::holidays::import_year(&db, &scope, &text, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(e)))?;
            println!("holidays for {year} loaded / 已导入 {year} 年节假日");
            Ok(0)
        }
        Command::Asset { command } => {
            let db = open_db(&config).await?;
            asset_cmd::run(&db, command, &os_user(), now_ms()).await
        }
        Command::Migrate => {
            let db = open_db(&config).await?;
            println!("schema version {}", db.schema_version().await?);
            Ok(0)
        }
    }
}

fn contract_check(file: &Path) -> Result<i32> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match yunwei_core::contract::check(&bytes) {
        Err(diagnostics) => {
            for d in &diagnostics {
                println!("{}:{d}", file.display());
            }
            println!("{} problem(s) / {} 处问题", diagnostics.len(), diagnostics.len());
            Ok(1)
        }
        Ok(c) => {
            let h = &c.file.contract;
            println!("{} {} ({} – {})", h.code.get_ref(), h.name, h.starts_on.get_ref(), h.ends_on.get_ref());
            for level in &c.file.levels {
                let name = level.name.get_ref();
                let parts: Vec<String> = c
                    .clocks
                    .iter()
                    .filter_map(|(rule, cal)| {
                        let (zh, en) = yunwei_core::contract::human_duration(*rule.targets.get(name)?);
                        let label = c
                            .file
                            .clocks
                            .iter()
                            .find(|d| d.name.get_ref() == &rule.name)
                            .map(|d| d.description.clone())
                            .filter(|d| !d.is_empty())
                            .unwrap_or_else(|| rule.name.clone());
                        Some(format!("{label} {zh} / {} {en} ({cal})", rule.name.replace('_', " ")))
                    })
                    .collect();
                println!("  {name}: {}", parts.join("; "));
            }
            println!("ok / 检查通过");
            Ok(0)
        }
    }
}

fn os_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

async fn serve(config: Config, demo: bool) -> Result<i32> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(yunwei_web::TlsFiles { cert: cert.clone(), key: key.clone() }),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    if tls.is_none() && !config.behind_tls_proxy && !config.listen.ip().is_loopback() {
        bail!(
            "refusing to serve plain HTTP on {}: passwords would cross the network in clear text. \
             Give --tls-cert/--tls-key, or --behind-tls-proxy when a TLS proxy is in front \
             / 拒绝在非本机地址上提供明文 HTTP 服务：请配置 TLS 证书，或声明前置 TLS 代理",
            config.listen
        );
    }
    // Checked before anything starts, so a wrong setting stops the server instead of losing mail.
    let mut channels: Vec<Arc<dyn yunwei_storage::notifications::Channel>> = Vec::new();
    if let Some(smtp) = config.smtp().map_err(anyhow::Error::msg)? {
        channels.push(Arc::new(yunwei_web::smtp::SmtpChannel::new(&smtp).map_err(anyhow::Error::msg)?));
        tracing::info!(host = %smtp.host, port = smtp.port, security = smtp.security.as_str(), "email notifications over SMTP");
    }
    let db = open_db(&config).await?;
    let now = now_ms();
    let mut first_start = Vec::new();
    for (login, name, role) in [
        ("sysadmin", "系统管理员", AdminRole::SystemAdmin),
        ("secadmin", "安全管理员", AdminRole::SecurityAdmin),
        ("auditadmin", "审计管理员", AdminRole::AuditAdmin),
    ] {
        if let Some(pw) = users::ensure_admin(&db, login, name, role, now).await? {
            first_start.push((login.to_string(), pw));
        }
    }
    let demo_users = if demo { demo::load(&db, now).await? } else { Vec::new() };
    if demo {
        demo::load_inspections(&db, config.listen, tls.is_some(), now).await?;
        demo_interfaces::load_interfaces(&db, now).await?;
    }
    let listener = std::net::TcpListener::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    // Installed before we announce ourselves, so a SIGTERM right after start is a clean stop too.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if !first_start.is_empty() || !demo_users.is_empty() {
        // Printed once, to the console of whoever started the server, never to the log.
        println!("\nyunwei 首次启动 / first start — one-time passwords, each must be changed at first login:");
        for (login, pw) in first_start.iter().chain(demo_users.iter()) {
            println!("  {login:<12} {pw}");
        }
        println!("Administrators also enrol a TOTP authenticator at first login.\n");
    }
    println!("yunwei listening on {scheme}://{addr}/ (database: {})", db.backend().as_str());
    let state = yunwei_web::AppState::new(
        db.clone(),
        Arc::new(Clock::default()),
        yunwei_web::WebConfig {
            tls: tls.is_some(),
            behind_tls_proxy: config.behind_tls_proxy,
            attachments_dir: Some(config.data_dir.join("attachments")),
        },
    );
    yunwei_web::jobs::spawn(state.clone(), channels);
    let options = yunwei_web::ServeOptions { tls, grace: Duration::from_secs(30) };
    yunwei_web::serve(listener, state, options, shutdown_signal(term)).await?;
    db.close().await;
    tracing::info!("stopped");
    Ok(0)
}

/// SIGTERM (service managers) or Ctrl-C.
async fn shutdown_signal(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

async fn user_command(config: &Config, command: UserCommand) -> Result<i32> {
    let db = open_db(config).await?;
    let operator = Principal::local_operator(&os_user());
    let now = now_ms();
    match command {
        UserCommand::Add { login, name, email, admin_role } => {
            let role = match admin_role.as_deref() {
                None | Some("") => None,
                Some(r) => Some(AdminRole::parse(r).with_context(|| format!("unknown admin role {r}"))?),
            };
            let pw = yunwei_core::password::initial_password_for(&login);
            let id = users::create(
                &db,
                &operator.admin_scope(AdminPermission::UserManage)?,
                users::NewUser { login: login.clone(), display_name: name, email },
                &pw,
                now,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", describe(e)))?;
            if role.is_some() {
                users::set_admin_role(&db, &operator.admin_scope(AdminPermission::RoleGrant)?, id, role, now).await?;
            }
            println!("created {login} (id {id}); one-time password: {pw}");
        }
        UserCommand::ResetPassword { login } => {
            let user = users::find_by_login(&db, &login).await?.with_context(|| format!("no account named {login}"))?;
            let pw = yunwei_core::password::initial_password_for(&user.login);
            users::reset_password(&db, &operator.admin_scope(AdminPermission::UserManage)?, user.id, &pw, now).await?;
            println!("new one-time password for {login}: {pw}");
        }
    }
    Ok(0)
}

fn describe(e: yunwei_storage::StoreError) -> String {
    match e {
        yunwei_storage::StoreError::Invalid { field, msg } => format!("{field}: {msg}"),
        yunwei_storage::StoreError::Conflict(msg) => msg.to_string(),
        yunwei_storage::StoreError::NotFound => "not found / 未找到".to_string(),
        other => other.to_string(),
    }
}

/// Restores a snapshot: checks it is a yunwei SQLite database this binary can open, then swaps it
/// in atomically (rename) and removes the old write-ahead log.
async fn restore(config: &Config, file: &Path) -> Result<i32> {
    let Some(target) = config.sqlite_path() else {
        bail!("restore is built in for SQLite only; restore PostgreSQL with pg_restore");
    };
    if !file.is_file() {
        bail!("{} is not a file", file.display());
    }
    std::fs::create_dir_all(target.parent().unwrap_or(Path::new(".")))?;
    let staged = target.with_extension("db.restoring");
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(file, &staged).with_context(|| format!("copying {}", file.display()))?;
    // Open the staged copy: this checks the format, refuses a newer schema and migrates an older one.
    let check = Db::connect(&format!("sqlite://{}", staged.display()), secret_box(config)?)
        .await
        .map_err(|e| anyhow::anyhow!("{} is not a usable yunwei backup: {e}", file.display()))?;
    let report = yunwei_storage::audit::verify(&check).await?;
    check.close().await;
    if let Some((seq, why)) = report.first_broken {
        let _ = std::fs::remove_file(&staged);
        bail!("the backup's audit log is broken at record {seq} ({why}); not restored");
    }
    for suffix in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(target.with_extension(suffix));
    }
    std::fs::rename(&staged, &target)?;
    let db = open_db(config).await?;
    db.audit_event(
        now_ms(),
        yunwei_storage::audit::AuditEntry::new(
            Principal::local_operator(&os_user()).actor(),
            "system.restore",
            file.display().to_string(),
        ),
    )
    .await?;
    println!("restored {} into {}", file.display(), target.display());
    Ok(0)
}
