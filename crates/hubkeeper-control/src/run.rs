//! Start-up of the control service: load the config (exit 78 on any problem), start
//! logging, open the database and the provisioner, listen, and serve until SIGTERM or
//! SIGINT.

use super::api::{self, Limits, State};
use super::config_load::ProvisionerPlan;
use super::config_load::{self, LoadedControlConfig};
use super::provision::Provisioner;
use super::provision::cloudflare::{self, CloudflareProvisioner};
use super::provision::local::{self, LocalProvisioner};
use super::service::Service;
use super::store::Store;
use super::store::sqlite::{DbError, SqliteStore};
use super::sweep;
use hubkeeper_base::config::credentials_dir_from_env;
use hubkeeper_base::exit::{self, ExitError};
use hubkeeper_base::{logging, systemd};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}; pick a free address for `listen`")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the provisioner: {0}")]
    Provisioner(crate::provision::ProvisionError),
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
    #[error("the database could not be opened: {0}")]
    Task(String),
}

/// Runs the control service with the config at `path` until a signal stops it.
pub fn run_command(path: &Path) -> Result<(), ExitError> {
    let loaded = config_load::load(path, credentials_dir_from_env().as_deref())
        .map_err(|e| ExitError::from(&e))?;
    logging::init(loaded.config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ExitError::new(exit::FAILURE, format!("cannot start the runtime: {e}")))?;
    rt.block_on(serve(loaded)).map_err(|e| {
        tracing::error!("{e}");
        // Already logged (to the journal or stderr): do not print it twice.
        ExitError::new(exit::FAILURE, "")
    })
}

async fn serve(loaded: LoadedControlConfig) -> Result<(), StartError> {
    let cfg = &loaded.config;
    let path = cfg.database.clone();
    let store = tokio::task::spawn_blocking(move || {
        let store = SqliteStore::open(&path)?;
        // Each provisioner's own tables, in the same file under their own component.
        // Both are always migrated, so switching `kind` back and forth keeps the file
        // readable by either.
        store.db().migrate(local::COMPONENT, local::MIGRATIONS)?;
        store
            .db()
            .migrate(cloudflare::COMPONENT, cloudflare::MIGRATIONS)?;
        Ok::<_, DbError>(store)
    })
    .await
    .map_err(|e| StartError::Task(e.to_string()))??;

    match loaded.provisioner.clone() {
        ProvisionerPlan::Local(settings) => {
            if settings.keys.len() < 2 {
                tracing::warn!(
                    "only one [[provisioner.local.keys]] pair: rotate-keys will answer 409 not_supported"
                );
            }
            tracing::info!(
                s3_endpoint = %settings.s3_endpoint,
                r2_endpoint = %settings.r2_endpoint,
                key_pairs = settings.keys.len(),
                "local provisioner"
            );
            let p = LocalProvisioner::new(store.db().clone(), settings)
                .map_err(StartError::Provisioner)?;
            serve_with(loaded, store, p).await
        }
        ProvisionerPlan::Cloudflare(settings) => {
            tracing::info!(
                api_base = %settings.api_base,
                account_id = %settings.account_id,
                r2_endpoint = %settings.r2_endpoint,
                jurisdiction = %settings.jurisdiction,
                "Cloudflare provisioner"
            );
            let p = CloudflareProvisioner::new(store.db().clone(), settings)
                .map_err(StartError::Provisioner)?;
            serve_with(loaded, store, p).await
        }
    }
}

async fn serve_with<S: Store, P: Provisioner>(
    loaded: LoadedControlConfig,
    store: S,
    provisioner: P,
) -> Result<(), StartError> {
    let cfg = loaded.config;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let limits = Limits {
        max_connections: cfg.max_connections as usize,
        request_timeout: cfg.request_timeout.get(),
    };
    let service = Service::new(store, provisioner, cfg.zone.clone());
    let state = Arc::new(State::new(service, loaded.token, limits));

    let shutdown = CancellationToken::new();
    let sweeper = tokio::spawn(sweep::run(
        state.service.clone(),
        cfg.sweep_interval.get(),
        shutdown.clone(),
    ));
    let mut sigterm = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
        }
        systemd::stopping();
        stop.cancel();
    });

    let addr = listener.local_addr().unwrap_or(cfg.listen);
    tracing::info!(
        listen = %addr,
        zone = %cfg.zone,
        database = %cfg.database.display(),
        "control service listening"
    );
    systemd::ready(&format!("listening on {addr}"));
    api::run(listener, state, shutdown).await;
    if let Err(e) = sweeper.await {
        tracing::error!("the sweep task failed: {e}");
    }
    tracing::info!("control service stopped");
    Ok(())
}
