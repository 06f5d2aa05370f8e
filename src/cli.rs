//! The command line.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use std::sync::Arc;

use crate::api::{Api, Reply, Request};
use crate::control;
use crate::janitor::{Janitor, JanitorOptions, Job};
use crate::server::{self, MountSpec, ServeOptions};
use crate::service::{OpenError, Service};
use crate::size::MinFree;
use crate::size::{format_size, parse_size};
use crate::torrents::engine::EngineOptions;
use crate::torrents::status::status_text;

#[derive(Parser)]
#[command(
    name = "torrentdrive",
    version,
    about = "A self-hosted, multi-user cloud drive that fetches torrents"
)]
pub struct Cli {
    /// Where everything is stored.
    #[arg(
        long,
        global = true,
        env = "TORRENTDRIVE_DATA",
        default_value = "./data"
    )]
    data: PathBuf,
    /// A TOML file setting any flag of `serve` and `mount` (default: DATA/config.toml if it
    /// exists). See `torrentdrive config example`.
    #[arg(long, global = true, env = "TORRENTDRIVE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: WebDAV at http://LISTEN/dav/, and the drives mounted at --mount DIR.
    Serve {
        /// Address for HTTP (WebDAV).
        #[arg(long, env = "TORRENTDRIVE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also mount the drives here with FUSE: DIR/<user>/... (or one drive, --mount-user).
        #[arg(long, env = "TORRENTDRIVE_MOUNT", value_name = "DIR")]
        mount: Option<PathBuf>,
        /// Mount only this user's drive, at the --mount folder itself.
        #[arg(
            long,
            env = "TORRENTDRIVE_MOUNT_USER",
            value_name = "NAME",
            requires = "mount"
        )]
        mount_user: Option<String>,
        /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
        #[arg(
            long,
            env = "TORRENTDRIVE_TLS_CERT",
            value_name = "FILE",
            requires = "tls_key"
        )]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(
            long,
            env = "TORRENTDRIVE_TLS_KEY",
            value_name = "FILE",
            requires = "tls_cert"
        )]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        fuse: FuseArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        upkeep: UpkeepArgs,
    },
    /// Run the daemon with the drives mounted at DIR by FUSE, without WebDAV.
    Mount {
        /// An empty folder: DIR/<user>/... (or one drive, --user).
        dir: PathBuf,
        /// Mount only this user's drive, at DIR itself.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[command(flatten)]
        fuse: FuseArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        upkeep: UpkeepArgs,
    },
    /// API tokens for scripts (Authorization: Bearer TOKEN on /api/v1/).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Back up the data dir into DEST while the daemon runs (or not): a consistent copy of
    /// the metadata, the files' contents and the engine's state; torrent data is left out.
    /// Run it again into the same DEST to update it.
    Backup {
        /// A folder outside the data dir, on the daemon's machine.
        dest: PathBuf,
    },
    /// Run one of the daemon's upkeep jobs now (through the daemon if it runs).
    #[command(subcommand)]
    Janitor(JanitorCommand),
    /// Remove blobs and torrent data no file references (the janitor's `orphans` job).
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Leave data younger than this (e.g. 1h, 0 for all): it may belong to a commit in
        /// progress.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        grace: std::time::Duration,
    },
    /// The config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage users (works with or without a running daemon).
    #[command(subcommand)]
    User(UserCommand),
    /// Add a torrent: a .torrent file, a magnet link or an http(s) URL of a .torrent. Goes
    /// through the user's /Add folder, as a dropped file would.
    Add {
        /// Whose drive.
        #[arg(long, default_value = "admin")]
        user: String,
        /// A path to a .torrent file, a magnet: link, or an http(s) URL.
        source: String,
    },
    /// List transfers (torrents in drives) with their progress.
    Transfers {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// As JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct EngineArgs {
    /// Address where the torrent engine accepts peers (`off`: accept none).
    #[arg(
        long,
        env = "TORRENTDRIVE_TORRENT_LISTEN",
        default_value = "0.0.0.0:4240"
    )]
    torrent_listen: String,
    /// Don't use the DHT to find peers.
    #[arg(long, env = "TORRENTDRIVE_NO_DHT")]
    no_dht: bool,
    /// Don't look for peers on the local network (LSD).
    #[arg(long, env = "TORRENTDRIVE_NO_LSD")]
    no_lsd: bool,
    /// Seconds a read of a not yet downloaded range may wait before it fails.
    #[arg(long, env = "TORRENTDRIVE_READ_TIMEOUT", default_value_t = 60)]
    read_timeout: u64,
    /// Download rate limit for all torrents together, per second (e.g. 10M).
    #[arg(long, env = "TORRENTDRIVE_DOWNLOAD_LIMIT", value_parser = parse_limit)]
    download_limit: Option<Limit>,
    /// Upload rate limit for all torrents together, per second (e.g. 2M).
    #[arg(long, env = "TORRENTDRIVE_UPLOAD_LIMIT", value_parser = parse_limit)]
    upload_limit: Option<Limit>,
    /// Downloads running at once; more wait in a queue.
    #[arg(long, env = "TORRENTDRIVE_MAX_ACTIVE", default_value_t = 5)]
    max_active: usize,
    /// Seed a completed torrent until it uploaded this many times its size...
    #[arg(long, env = "TORRENTDRIVE_SEED_RATIO", default_value_t = 1.0)]
    seed_ratio: f64,
    /// ...or for this long, whichever comes first (e.g. 24h, 90m, 2d, 0 for no seeding).
    #[arg(long, env = "TORRENTDRIVE_SEED_TIME", default_value = "24h", value_parser = parse_duration)]
    seed_time: std::time::Duration,
    /// A download that gets nothing this long from the peers it knows is restarted
    /// (reconnects, announces again).
    #[arg(long, env = "TORRENTDRIVE_STALL_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    stall_timeout: std::time::Duration,
    /// A download with no peer at all this long is given up on: paused, with the reason in
    /// /Add/status.txt (reading one of its files tries again).
    #[arg(long, env = "TORRENTDRIVE_NO_PEERS_TIMEOUT", default_value = "6h", value_parser = parse_duration)]
    no_peers_timeout: std::time::Duration,
    /// Chunk requests outstanding per peer: lower answers seeks sooner, higher suits
    /// distant peers.
    #[arg(long, env = "TORRENTDRIVE_REQUEST_WINDOW", default_value_t = 128)]
    request_window: usize,
    /// A tracker announced to for every torrent (repeatable).
    #[arg(long = "tracker", env = "TORRENTDRIVE_TRACKERS", value_delimiter = ',')]
    trackers: Vec<String>,
}

/// `90s`, `30m`, `24h`, `2d` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 90s, 30m, 24h, 2d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit in `{text}` (use s, m, h or d)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// A rate limit in bytes per second, as librqbit takes it.
fn rate(limit: Option<Limit>, flag: &str) -> anyhow::Result<Option<u32>> {
    match limit.and_then(|l| l.0) {
        None => Ok(None),
        Some(bps) => u32::try_from(bps)
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{flag}: at most 4 GiB per second")),
    }
}

impl EngineArgs {
    fn options(&self) -> anyhow::Result<EngineOptions> {
        let listen = match self.torrent_listen.as_str() {
            "off" => None,
            addr => Some(
                addr.parse()
                    .with_context(|| format!("--torrent-listen: `{addr}` is not an address"))?,
            ),
        };
        Ok(EngineOptions {
            listen,
            dht: !self.no_dht,
            lsd: !self.no_lsd,
            read_timeout: std::time::Duration::from_secs(self.read_timeout.max(1)),
            download_limit: rate(self.download_limit, "--download-limit")?,
            upload_limit: rate(self.upload_limit, "--upload-limit")?,
            trackers: self.trackers.clone(),
            max_active: self.max_active,
            seed_ratio: self.seed_ratio,
            seed_time: self.seed_time,
            stall_timeout: self.stall_timeout.max(std::time::Duration::from_secs(1)),
            no_peers_timeout: self.no_peers_timeout.max(std::time::Duration::from_secs(1)),
            request_window: self.request_window,
        })
    }
}

/// Runs the daemon until SIGINT/SIGTERM.
fn daemon(
    data: &Path,
    listen: Option<SocketAddr>,
    tls: Option<(PathBuf, PathBuf)>,
    engine: EngineOptions,
    mount: Option<MountSpec>,
    upkeep: UpkeepArgs,
) -> anyhow::Result<()> {
    init_logging(upkeep.log_format);
    let service = Service::open(data)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(server::serve(
        service,
        ServeOptions {
            listen,
            engine,
            mount,
            janitor: upkeep.janitor(),
            min_free: upkeep.min_free,
            metrics_listen: upkeep.metrics_listen.0,
            tls,
        },
    ))
}

#[derive(Args)]
struct FuseArgs {
    /// Let other local users (a media server, say) into the mount; as a non-root user this
    /// needs `user_allow_other` in /etc/fuse.conf.
    #[arg(long, env = "TORRENTDRIVE_ALLOW_OTHER")]
    allow_other: bool,
    /// Read complete files through the daemon instead of letting the kernel read them
    /// directly (FUSE passthrough, used when the kernel and privileges allow).
    #[arg(long, env = "TORRENTDRIVE_NO_PASSTHROUGH")]
    no_passthrough: bool,
}

impl FuseArgs {
    fn spec(&self, dir: PathBuf, user: Option<String>, engine: &EngineOptions) -> MountSpec {
        MountSpec {
            dir,
            user,
            options: torrentdrive_fs::fuse::MountOptions {
                allow_other: self.allow_other,
                passthrough: !self.no_passthrough,
                // A torrent read fails at the read timeout; this only catches what else hangs.
                request_timeout: engine.read_timeout + std::time::Duration::from_secs(30),
                ..Default::default()
            },
        }
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token; it is printed once and never shown again.
    Create {
        #[arg(long, default_value = "admin")]
        user: String,
        /// What it is for.
        #[arg(long, default_value = "script")]
        name: String,
    },
    /// A user's tokens (id, name, creation date).
    List {
        #[arg(long, default_value = "admin")]
        user: String,
    },
    /// Revoke a token by its id.
    Revoke {
        id: String,
        #[arg(long, default_value = "admin")]
        user: String,
    },
}

#[derive(Subcommand)]
enum JanitorCommand {
    /// Run JOB now: `quotas` (recompute each user's usage from their files and correct
    /// drift) or `orphans` (remove data no file references, older than an hour).
    Run {
        job: String,
        /// Only say what would change.
        #[arg(long)]
        dry_run: bool,
    },
}

/// How the daemon looks after itself.
#[derive(Args)]
struct UpkeepArgs {
    /// Disk space to keep free: uploads that would go below get 507. A size (10G), a
    /// percentage of the disk (5%), or `auto`: 5% but at most 2 GiB.
    #[arg(long, env = "TORRENTDRIVE_MIN_FREE", default_value = "auto", value_parser = MinFree::parse)]
    min_free: MinFree,
    /// Time between two checks of every user's usage against their files.
    #[arg(long, env = "TORRENTDRIVE_QUOTA_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    quota_interval: std::time::Duration,
    /// Time between two removals of data no file references.
    #[arg(long, env = "TORRENTDRIVE_ORPHAN_INTERVAL", default_value = "6h", value_parser = parse_duration)]
    orphan_interval: std::time::Duration,
    /// Age under which unreferenced data is left alone by the janitor.
    #[arg(long, env = "TORRENTDRIVE_ORPHAN_GRACE", default_value = "1h", value_parser = parse_duration)]
    orphan_grace: std::time::Duration,
    /// Log lines for people (`human`) or one JSON object a line (`json`).
    #[arg(
        long,
        env = "TORRENTDRIVE_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    log_format: LogFormat,
    /// Where /metrics (Prometheus) and /healthz listen (`off`: nowhere).
    #[arg(long, env = "TORRENTDRIVE_METRICS_LISTEN", default_value = "127.0.0.1:9134", value_parser = parse_listen)]
    metrics_listen: Listen,
}

/// `off`, or an address.
fn parse_listen(text: &str) -> Result<Listen, String> {
    match text {
        "off" => Ok(Listen(None)),
        addr => addr
            .parse()
            .map(|a| Listen(Some(a)))
            .map_err(|_| format!("`{addr}` is not an address (host:port) or `off`")),
    }
}

#[derive(Clone, Copy, Debug)]
struct Listen(Option<SocketAddr>);

impl UpkeepArgs {
    fn janitor(&self) -> JanitorOptions {
        JanitorOptions {
            quota_interval: self.quota_interval.max(std::time::Duration::from_secs(1)),
            orphan_interval: self.orphan_interval.max(std::time::Duration::from_secs(1)),
            orphan_grace: self.orphan_grace,
        }
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a config file with every key, commented out, with its default.
    Example,
}

#[derive(Args)]
struct PasswordArgs {
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Storage limit, e.g. 500G, 2T, 1.5TB, or `none` (the default).
        #[arg(long, value_parser = parse_limit)]
        quota: Option<Limit>,
    },
    /// List users with their quota and usage.
    List,
    /// Change a user's password.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete a user and all their files.
    Remove { name: String },
    /// Set a user's storage limit (e.g. 500G, or `none`).
    Quota {
        name: String,
        #[arg(value_parser = parse_limit)]
        size: Limit,
    },
}

/// A storage limit; `None` is unlimited.
#[derive(Clone, Copy)]
struct Limit(Option<u64>);

fn parse_limit(text: &str) -> Result<Limit, String> {
    parse_size(text).map(Limit)
}

fn read_password(args: &PasswordArgs, name: &str) -> anyhow::Result<String> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(password);
    }
    let first = rpassword::prompt_password(format!("Password for {name}: "))
        .context("reading the password (use --password-stdin without a terminal)")?;
    let again = rpassword::prompt_password("Again: ")?;
    if first != again {
        bail!("the passwords differ");
    }
    Ok(first)
}

/// Sends a request to the daemon if one runs on `data`, else performs it here.
fn call(data: &Path, req: Request) -> anyhow::Result<Reply> {
    let socket = control::socket_path(data);
    if let Some(reply) = control::call(&socket, &req)
        .with_context(|| format!("talking to the daemon at {}", socket.display()))?
    {
        return Ok(reply);
    }
    let service = match Service::open(data) {
        Err(OpenError::InUse(path)) => bail!(
            "a torrentdrive daemon holds {} but its control socket does not answer",
            path.display()
        ),
        other => other?,
    };
    let janitor = Arc::new(Janitor::new(
        service.users.storage().clone(),
        service.data.clone(),
        JanitorOptions::default(),
    ));
    Ok(Api::new(service.users.clone(), service.data.clone(), janitor, None).call(req))
}

fn janitor(data: &Path, job: Job, dry_run: bool, grace: Option<u64>) -> anyhow::Result<()> {
    match call(
        data,
        Request::Janitor {
            job,
            dry_run,
            grace,
        },
    )? {
        Reply::Report { actions } if actions.is_empty() => {
            println!("{}: nothing to do", job.name());
            Ok(())
        }
        Reply::Report { actions } => {
            for action in actions {
                println!("{action}");
            }
            Ok(())
        }
        Reply::Error { message } => bail!(message),
        other => bail!("unexpected reply from the daemon: {other:?}"),
    }
}

fn run_user(data: &Path, cmd: UserCommand) -> anyhow::Result<()> {
    let req = match cmd {
        UserCommand::Add {
            name,
            password,
            quota,
        } => Request::UserAdd {
            password: read_password(&password, &name)?,
            name,
            quota: quota.and_then(|l| l.0),
        },
        UserCommand::List => Request::UserList,
        UserCommand::Passwd { name, password } => Request::UserPasswd {
            password: read_password(&password, &name)?,
            name,
        },
        UserCommand::Remove { name } => Request::UserRemove { name },
        UserCommand::Quota { name, size } => Request::UserQuota {
            name,
            quota: size.0,
        },
    };
    match call(data, req)? {
        Reply::Done => Ok(()),
        Reply::Users { users } => {
            println!(
                "{:<24} {:>12} {:>12} {:>8} {:>12} {:>12}",
                "USER", "USED", "QUOTA", "FILES", "SERVED", "DOWNLOADED"
            );
            for u in users {
                println!(
                    "{:<24} {:>12} {:>12} {:>8} {:>12} {:>12}",
                    u.name,
                    format_size(u.used),
                    u.quota.map_or("none".to_owned(), format_size),
                    u.files,
                    format_size(u.served_month),
                    format_size(u.downloaded_month)
                );
            }
            println!("(SERVED and DOWNLOADED: this calendar month, UTC)");
            Ok(())
        }
        Reply::Error { message } => bail!(message),
        other => bail!("unexpected reply from the daemon: {other:?}"),
    }
}

fn add(data_dir: &Path, user: String, source: &str) -> anyhow::Result<()> {
    use base64::Engine as _;
    let (name, bytes) = if crate::torrents::pickup::is_link(source) {
        (
            crate::torrents::pickup::link_drop_name(source),
            format!("{source}\n").into_bytes(),
        )
    } else {
        let path = Path::new(source);
        let bytes = std::fs::read(path).with_context(|| format!("reading {source}"))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "added.torrent".into());
        (name, bytes)
    };
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    match call(data_dir, Request::Add { user, name, data })? {
        Reply::Added { name } => {
            println!("added as /Add/{name}; see /Add/status.txt or `torrentdrive transfers`");
            Ok(())
        }
        Reply::Error { message } => bail!(message),
        other => bail!("unexpected reply from the daemon: {other:?}"),
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => logs.init(),
        // One JSON object a line, fields (user, transfer, path...) as keys.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// How the daemon writes its log (to standard error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

pub fn main() -> anyhow::Result<()> {
    let cli = crate::config::parse()?;
    match cli.command {
        Command::Config(ConfigCommand::Example) => {
            print!("{}", crate::config::example());
            Ok(())
        }
        Command::Serve {
            listen,
            mount,
            mount_user,
            tls_cert,
            tls_key,
            fuse,
            engine,
            upkeep,
        } => {
            let engine = engine.options()?;
            let mount = mount.map(|dir| fuse.spec(dir, mount_user, &engine));
            let tls = tls_cert.zip(tls_key);
            daemon(&cli.data, Some(listen), tls, engine, mount, upkeep)
        }
        Command::Mount {
            dir,
            user,
            fuse,
            engine,
            upkeep,
        } => {
            let engine = engine.options()?;
            let mount = fuse.spec(dir, user, &engine);
            daemon(&cli.data, None, None, engine, Some(mount), upkeep)
        }
        Command::Janitor(JanitorCommand::Run { job, dry_run }) => {
            janitor(&cli.data, Job::parse(&job)?, dry_run, None)
        }
        Command::Token(cmd) => {
            let req = match cmd {
                TokenCommand::Create { user, name } => Request::TokenCreate { user, name },
                TokenCommand::List { user } => Request::TokenList { user },
                TokenCommand::Revoke { id, user } => Request::TokenRevoke { user, id },
            };
            match call(&cli.data, req)? {
                Reply::Token { token, info } => {
                    println!("{token}");
                    eprintln!(
                        "token {} ({}): shown only now; use it as `Authorization: Bearer {token}`",
                        info.id, info.name
                    );
                    Ok(())
                }
                Reply::Tokens { tokens } => {
                    println!("{:<14} {:<24} CREATED (Unix time)", "ID", "NAME");
                    for t in tokens {
                        println!("{:<14} {:<24} {}", t.id, t.name, t.created);
                    }
                    Ok(())
                }
                Reply::Done => Ok(()),
                Reply::Error { message } => bail!(message),
                other => bail!("unexpected reply from the daemon: {other:?}"),
            }
        }
        Command::Backup { dest } => {
            // The daemon resolves the path: make it absolute here.
            let dest = std::path::absolute(&dest).with_context(|| format!("{}", dest.display()))?;
            match call(&cli.data, Request::Backup { dest: dest.clone() })? {
                Reply::BackedUp { report } => {
                    println!(
                        "backed up into {}: {} blobs copied ({}), {} already there, {} removed",
                        dest.display(),
                        report.blobs_copied,
                        format_size(report.bytes_copied),
                        report.blobs_kept,
                        report.blobs_removed
                    );
                    Ok(())
                }
                Reply::Error { message } => bail!(message),
                other => bail!("unexpected reply from the daemon: {other:?}"),
            }
        }
        Command::Gc { dry_run, grace } => {
            janitor(&cli.data, Job::Orphans, dry_run, Some(grace.as_secs()))
        }
        Command::User(cmd) => run_user(&cli.data, cmd),
        Command::Add { user, source } => add(&cli.data, user, &source),
        Command::Transfers { user, json } => {
            match call(&cli.data, Request::Transfers { user: user.clone() })? {
                Reply::Transfers { transfers } if json => {
                    println!("{}", serde_json::to_string_pretty(&transfers)?);
                    Ok(())
                }
                Reply::Transfers { transfers } => {
                    print!("{}", status_text(&transfers, user.is_none()));
                    Ok(())
                }
                Reply::Error { message } => bail!(message),
                other => bail!("unexpected reply from the daemon: {other:?}"),
            }
        }
    }
}
