//! `weir console`: the console on the embedded registry (`serve`), and its
//! API tokens (`token create|list|revoke`). `weir demo` and `weir serve
//! --console` start the same console beside the pipeline.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use weir_console::tail::{DeadLetterSource, ObjectTail, Tail};
use weir_console::{AccessStore, Console, ConsoleSettings, Role};
use weir_embedded::EmbeddedRegistry;
use weir_runtime::Runtime;

use crate::wiring::{self, Backend, StreamArgs};
use weir_aws::{AwsBackends, AwsClients, AwsSettings};
use weir_core::registry::Registry;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the console (REST API under /api/v1, pages for people).
    Serve {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        target: StreamArgs,
        /// Where the registry lives: the embedded one under --data-dir, or
        /// the AWS one (--registry-table, components in --raw-bucket). The
        /// console's tokens stay under --data-dir either way.
        #[arg(long, value_enum, default_value = "embedded")]
        backend: Backend,
        #[command(flatten)]
        aws: Box<AwsSettings>,
    },
    /// API tokens: shown once when created, stored hashed.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        /// Its name: the actor in the audit log.
        #[arg(long)]
        name: String,
        /// A tenant token, limited to this tenant; without it, an admin token.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        target: StreamArgs,
    },
    /// The tokens, without their secrets (JSON Lines).
    List {
        #[command(flatten)]
        target: StreamArgs,
    },
    /// Revoke a token by name.
    Revoke {
        name: String,
        #[command(flatten)]
        target: StreamArgs,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// The console's address.
    #[arg(long = "console-listen", default_value = "127.0.0.1:8080")]
    pub address: SocketAddr,
    /// The largest upload the console takes, in MiB.
    #[arg(long, default_value_t = 16)]
    pub max_upload_mib: usize,
}

/// The console's token database under a data directory.
pub fn access_store(data_dir: &Path) -> anyhow::Result<AccessStore> {
    let path = data_dir.join("state").join("console.db");
    AccessStore::open(&path).with_context(|| format!("opening {}", path.display()))
}

/// Binds the console's address and serves it in the background; returns the
/// address it listens on (useful with port 0).
pub async fn start<R: Registry + 'static>(
    registry: R,
    runtime: Runtime,
    access: AccessStore,
    tail: impl Tail,
    listen: &ListenArgs,
) -> anyhow::Result<SocketAddr> {
    let settings = ConsoleSettings {
        max_upload_bytes: listen.max_upload_mib << 20,
        ..Default::default()
    };
    let console = Arc::new(Console::new(registry, runtime, access, settings).with_tail(tail));
    let listener = tokio::net::TcpListener::bind(listen.address)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (in use? choose another with --console-listen)",
                listen.address
            )
        })?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = weir_console::serve(listener, console).await {
            tracing::error!(error = %e, "the console stopped");
        }
    });
    tracing::info!(%address, "console listening");
    Ok(address)
}

pub fn run(runtime: Runtime, command: Command) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        match command {
            Command::Serve {
                listen,
                target,
                backend,
                aws,
            } => {
                let access = access_store(&target.data_dir)?;
                let address = match backend {
                    Backend::Embedded => {
                        let (objects, state) = wiring::embedded(&target.data_dir)?;
                        let tail = ObjectTail {
                            objects: objects.clone(),
                            dead_letters: DeadLetterSource::Embedded(state.clone()),
                        };
                        let registry = EmbeddedRegistry::open(state, objects).await?;
                        start(registry, runtime, access, tail, &listen).await?
                    }
                    Backend::Aws => {
                        let clients = AwsClients::from_env().await;
                        let backends = AwsBackends::connect(&clients, &aws).await?;
                        let tail = ObjectTail {
                            objects: backends.objects,
                            dead_letters: DeadLetterSource::Elsewhere(format!(
                                "in the SQS queue {}: `weir dlq list --backend aws` reads them",
                                aws.dead_letter_queue
                            )),
                        };
                        start(backends.registry, runtime, access, tail, &listen).await?
                    }
                };
                eprintln!(
                    "console at http://{address}/ (sign in with a token from `weir console token create`; Ctrl-C to stop)"
                );
                tokio::signal::ctrl_c().await?;
            }
            Command::Token(TokenCommand::Create {
                name,
                tenant,
                target,
            }) => {
                let role = tenant.map_or(Role::Admin, Role::Tenant);
                let now = weir_core::time::format_utc(chrono::Utc::now());
                let token = access_store(&target.data_dir)?
                    .create_token(&name, role, &now)
                    .await?;
                eprintln!("token `{name}` created; it is not shown again:");
                println!("{token}");
            }
            Command::Token(TokenCommand::List { target }) => {
                for token in access_store(&target.data_dir)?.tokens().await? {
                    println!("{}", serde_json::to_string(&token)?);
                }
            }
            Command::Token(TokenCommand::Revoke { name, target }) => {
                if !access_store(&target.data_dir)?.revoke(&name).await? {
                    anyhow::bail!("no token named `{name}` (`weir console token list`)");
                }
                eprintln!("token `{name}` revoked");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
