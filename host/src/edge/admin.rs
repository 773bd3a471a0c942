//! The host's admin API (role `admin`): the audit log and its verification,
//! the outbox, the loaded plugins, reloads, signing keys, webhooks and
//! backups.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;

use crate::app::App;
use crate::audit::{Envelope, Outcome};
use crate::error::ApiError;
use crate::outbox::State;

/// Records per page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;
/// Most records per page.
const MAX_PAGE: usize = 1000;

/// Serves `/admin/**`; authorization is already done.
pub async fn handle(
    app: &App,
    method: &Method,
    path: &str,
    query: Option<&str>,
    envelope: &Envelope,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let storage_error = |e: crate::audit::AuditError| {
        tracing::error!(error = %e, "audit log unavailable");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", "the audit log cannot be read")
    };
    match (method, path) {
        (&Method::GET, "/admin/audit") => {
            let after = query_param(query, "after", 0)?;
            let limit = query_param(query, "limit", DEFAULT_PAGE as u64)?;
            if limit == 0 || limit > MAX_PAGE as u64 {
                return Err(invalid_query("limit", &format!("must be between 1 and {MAX_PAGE}")));
            }
            let records = app.audit.records(after, limit as usize).await.map_err(storage_error)?;
            let next = (records.len() == limit as usize).then(|| records.last().map(|r| r.id)).flatten();
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "records": records, "next_after": next })))
        }
        (&Method::GET, "/admin/audit/verify") => {
            let report = app.audit.verify().await.map_err(storage_error)?;
            Ok(super::json_response(StatusCode::OK, &serde_json::to_value(report).expect("reports serialize")))
        }
        (&Method::POST, "/admin/reload") => {
            let report = app.reload(envelope).await;
            let status = if report.applied { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
            Ok(super::json_response(status, &serde_json::to_value(report).expect("reports serialize")))
        }
        (&Method::POST, _) if path.starts_with("/admin/plugins/") && path.ends_with("/rollback") => {
            let name = path.trim_start_matches("/admin/plugins/").trim_end_matches("/rollback");
            match app.rollback(name, envelope).await {
                Ok(()) => Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "rolled_back": name }))),
                Err(why) => Err(ApiError::new(StatusCode::CONFLICT, "rollback_refused", why)),
            }
        }
        (&Method::GET, "/admin/plugins") => {
            let deployment = app.deployment.load();
            let errors = app.plugin_errors();
            let plugins: Vec<_> = deployment
                .plugins
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.config.name,
                        "version": p.config.settings.get("version"),
                        "digest": p.plugin.digest,
                        "state": "serving",
                        "routes": p.config.routes,
                        "grants": p.config.grants.iter().map(|g| g.name()).collect::<Vec<_>>(),
                        "loaded_at": p.loaded_at,
                        "compiled_from_cache": p.origin == crate::runtime::cache::Origin::Cache,
                        "canary": p.canary.as_ref().map(|(canary, weight)| serde_json::json!({
                            "digest": canary.digest,
                            "weight": weight,
                            "version": p.config.canary.as_ref().and_then(|c| c.settings.get("version")),
                        })),
                        "previous_digest": p.previous.as_ref().map(|prev| prev.plugin.digest.clone()),
                        "last_error": errors.get(&p.config.name),
                        "open_streams": app.events.open_streams_of(&p.config.name),
                    })
                })
                .collect();
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "plugins": plugins })))
        }
        (&Method::GET, "/admin/backups") => Ok(super::json_response(
            StatusCode::OK,
            &serde_json::json!({ "dir": app.backups.dir(), "backups": app.backups.list() }),
        )),
        (&Method::POST, "/admin/backups") => start_backup(app, envelope),
        (&Method::GET, _) if path.starts_with("/admin/backups/") => {
            let id = path.trim_start_matches("/admin/backups/");
            match app.backups.get(id) {
                Some(status) => {
                    Ok(super::json_response(StatusCode::OK, &serde_json::to_value(status).expect("serializes")))
                }
                None => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("there is no backup `{id}`"))),
            }
        }
        (_, "/admin/auth/emergency" | "/admin/auth/emergency/links") => {
            emergency(app, method, path, query, envelope).await
        }
        (&Method::GET, "/admin/auth/providers" | "/admin/auth/drift") => {
            let Some(oidc) = &app.oidc else {
                return Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "providers": [] })));
            };
            let statuses: Vec<crate::oidc::Status> = oidc.providers().map(|p| p.status()).collect();
            let body = if path.ends_with("/drift") {
                let drift: Vec<serde_json::Value> = statuses
                    .iter()
                    .map(|s| serde_json::json!({ "provider": s.name, "state": s.state, "drift": s.drift }))
                    .collect();
                serde_json::json!({ "providers": drift })
            } else {
                serde_json::json!({ "providers": statuses })
            };
            Ok(super::json_response(StatusCode::OK, &body))
        }
        (&Method::POST, _) if path.starts_with("/admin/auth/providers/") => {
            let rest = path.trim_start_matches("/admin/auth/providers/");
            let oidc_error = |e: crate::oidc::OidcError| {
                let status = match e {
                    crate::oidc::OidcError::UnknownProvider(_) => StatusCode::NOT_FOUND,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                ApiError::new(status, e.code(), e.to_string())
            };
            let oidc = app.oidc.as_ref().ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no sign-in provider is configured")
            })?;
            let status = match rest.split_once('/') {
                Some((name, "probe")) => oidc.probe(name).await.map_err(oidc_error)?,
                Some((name, "baseline")) => {
                    oidc.accept_baseline(name, envelope).await.map_err(oidc_error)?;
                    oidc.status(name).map_err(oidc_error)?
                }
                _ => return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {path}"))),
            };
            Ok(super::json_response(StatusCode::OK, &serde_json::to_value(status).expect("serializes")))
        }
        (&Method::GET, "/admin/migrations") => {
            let deployment = app.deployment.load();
            let ledger = crate::migrations::Ledger::open(app.storage.as_ref()).map_err(ledger_error)?;
            let mut plugins = Vec::new();
            for entry in &deployment.config.plugins {
                let plugin =
                    crate::migrations::run::PluginMigrations::load(&app.runtime, entry, &ledger).await.map_err(
                        |e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "migrations_unavailable", format!("{e:#}")),
                    )?;
                let receipt = ledger.receipt(&entry.name).await.map_err(ledger_error)?;
                plugins.push(plugin.status(receipt.as_ref()));
            }
            let host = serde_json::json!({
                "data_version": ledger.host_state().await.map_err(ledger_error)?.map(|s| s.version),
                "steps": crate::migrations::host::STEPS.len(),
                "applied": ledger.host_applied().await.map_err(ledger_error)?,
            });
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "host": host, "plugins": plugins })))
        }
        (&Method::POST, _) if path.starts_with("/admin/migrations/") => {
            let rest = path.trim_start_matches("/admin/migrations/");
            match rest.rsplit_once('/') {
                Some((name, "rehearse")) => start_rehearsal(app, name, envelope).await,
                Some((name, "apply")) => open_window(app, name, query, envelope).await,
                Some((name, "complete")) => close_window(app, name, true, envelope).await,
                Some((name, "abort")) => close_window(app, name, false, envelope).await,
                _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no admin route {path}"))),
            }
        }
        (&Method::GET, "/admin/data/shape") => {
            let snapshot = app.storage.snapshot().map_err(|_| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "snapshot_busy",
                    "a backup is reading the data; ask again when it ends",
                )
            })?;
            let shapes = tokio::task::spawn_blocking(move || crate::shape::of(snapshot.as_ref()))
                .await
                .expect("reading shapes does not panic")
                .map_err(|e| {
                    tracing::error!(error = %e, "data shapes could not be read");
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "the data cannot be read")
                })?;
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "namespaces": shapes })))
        }
        (&Method::GET, "/admin/signing-keys") => {
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "keys": app.signing.list() })))
        }
        // Recorded first: a key change whose record cannot be stored is not made.
        (&Method::POST, "/admin/signing-keys/rotate") => {
            let action = "signing.rotated";
            audited(app, envelope.draft(action, "signing-keys", Outcome::Success, None)).await?;
            if let Err(e) = app.signing.rotate().await {
                return Err(signing_failed(app, envelope, action, e).await);
            }
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "keys": app.signing.list() })))
        }
        (&Method::POST, "/admin/signing-keys/retire") => {
            let action = "signing.retired";
            audited(app, envelope.draft(action, "signing-keys", Outcome::Success, None)).await?;
            let retired = match app.signing.retire_old().await {
                Ok(retired) => retired,
                Err(e) => return Err(signing_failed(app, envelope, action, e).await),
            };
            Ok(super::json_response(
                StatusCode::OK,
                &serde_json::json!({ "retired": retired, "keys": app.signing.list() }),
            ))
        }
        (&Method::GET, "/admin/outbox") => {
            let state = match query_text(query, "state").unwrap_or("failed") {
                "queued" => State::Queued,
                "sent" => State::Sent,
                "failed" => State::Failed,
                _ => return Err(invalid_query("state", "must be `queued`, `sent` or `failed`")),
            };
            let limit = query_param(query, "limit", DEFAULT_PAGE as u64)?.clamp(1, MAX_PAGE as u64);
            let messages = app.outbox.envelopes(state, limit as usize).await.map_err(|e| {
                tracing::error!(error = %e, "outbox unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "outbox_unavailable", "the outbox cannot be read")
            })?;
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "messages": messages })))
        }
        (&Method::GET, "/admin/webhooks") => {
            let endpoints = app.webhooks.endpoints().await.map_err(|e| {
                tracing::error!(error = %e, "webhooks unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "webhooks_unavailable", "the webhooks cannot be read")
            })?;
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "endpoints": endpoints })))
        }
        (&Method::GET, _) if path.starts_with("/admin/webhooks/") && path.ends_with("/deliveries") => {
            let id = path.trim_start_matches("/admin/webhooks/").trim_end_matches("/deliveries");
            let log = app.webhooks.deliveries(None, id).await.map_err(webhook_error)?;
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "deliveries": log })))
        }
        (&Method::POST, _) if path.starts_with("/admin/webhooks/") && path.ends_with("/enable") => {
            let id = path.trim_start_matches("/admin/webhooks/").trim_end_matches("/enable");
            let endpoint = app.webhooks.enable(None, id, envelope).await.map_err(webhook_error)?;
            Ok(super::json_response(StatusCode::OK, &serde_json::to_value(endpoint).expect("serializes")))
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no admin route {method} {path}"))),
    }
}

/// Starts a backup on a task of its own (a large one outlives any request
/// deadline): 202 with where to follow it; its end is audited.
fn start_backup(app: &App, envelope: &Envelope) -> Result<Response<Full<Bytes>>, ApiError> {
    let id = app.backups.start().map_err(|_| {
        ApiError::new(StatusCode::CONFLICT, "backup_running", "a backup is being taken; wait for it to end")
    })?;
    let (backups, storage, blobs, audit, metrics) =
        (app.backups.clone(), app.storage.clone(), app.blobs.clone(), app.audit.clone(), app.metrics.clone());
    let (task_id, envelope) = (id.clone(), envelope.clone());
    tokio::spawn(async move {
        let result = backups.take(&task_id, storage.as_ref(), &blobs).await;
        let draft = match &result {
            Ok(summary) => {
                crate::metrics::Metrics::count(&metrics.backups, "done");
                metrics.backup_write_pause.set(summary.write_pause_us as f64 / 1e6);
                let reason = format!(
                    "{} bytes in {}, writers paused {} µs",
                    summary.bytes,
                    summary.file.display(),
                    summary.write_pause_us
                );
                envelope.draft("backup.created", &task_id, Outcome::Success, Some(reason))
            }
            Err(e) => {
                crate::metrics::Metrics::count(&metrics.backups, "failed");
                tracing::error!(backup = task_id, error = %e, "backup failed");
                envelope.draft("backup.created", &task_id, Outcome::Failure, Some(e.to_string()))
            }
        };
        if let Err(e) = audit.append(draft).await {
            tracing::error!(backup = task_id, error = %e, "the backup's audit record was not stored");
        }
    });
    let mut response = super::json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "id": id, "state": "running", "href": format!("/admin/backups/{id}") }),
    );
    response.headers_mut().insert(
        http::header::LOCATION,
        http::HeaderValue::from_str(&format!("/admin/backups/{id}")).expect("ids are header-safe"),
    );
    Ok(response)
}

/// Rehearses a plugin's pending migration steps on a copy of a fresh
/// backup, on a task of its own (202; the receipt shows in `GET
/// /admin/migrations`, the outcome in the audit log). The plugin's entry is
/// read from the config file as it is now, so that a component the running
/// deployment refused (its data version is not the data's) can be
/// rehearsed before the server is stopped to apply it.
async fn start_rehearsal(app: &App, name: &str, envelope: &Envelope) -> Result<Response<Full<Bytes>>, ApiError> {
    let entry = configured_plugin(app, name)?;
    let bench = workbench(app, envelope)?;
    let one_at_a_time = migrating(app)?;
    let runtime = app.runtime.clone();
    let handle = tokio::runtime::Handle::current();
    // Restoring and converting do blocking file and database work: on a
    // thread of their own, off the threads that serve requests.
    tokio::task::spawn_blocking(move || {
        let _one_at_a_time = one_at_a_time;
        handle.block_on(async {
            let rehearsed = async {
                let plugin = crate::migrations::run::PluginMigrations::load(&runtime, &entry, &bench.ledger).await?;
                bench.rehearse(&plugin).await
            }
            .await;
            if let Err(e) = rehearsed {
                tracing::warn!(plugin = entry.name, error = %e, "rehearsal failed");
                let _ = bench.record("migration.rehearsed", &entry.name, Outcome::Failure, format!("{e:#}")).await;
            }
        })
    });
    Ok(super::json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "plugin": name, "state": "running", "href": "/admin/migrations" }),
    ))
}

/// A plugin's entry as the config file holds it now, so that a component
/// the running deployment refused (its data version is not the data's)
/// can be rehearsed and migrated to.
fn configured_plugin(app: &App, name: &str) -> Result<crate::config::PluginConfig, ApiError> {
    let config = match app.config_source() {
        Some(source) => source
            .load()
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "config_invalid", format!("{e:#}")))?,
        None => app.deployment.load().config.clone(),
    };
    config
        .plugins
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("there is no plugin `{name}`")))
}

/// The workbench of the serving data, acting as the admin; refused while
/// a backup runs (each step takes one).
fn workbench(app: &App, envelope: &Envelope) -> Result<crate::migrations::run::Workbench, ApiError> {
    if app.backups.running() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup_running",
            "a backup is being taken; wait for it to end",
        ));
    }
    Ok(crate::migrations::run::Workbench {
        storage: app.storage.clone(),
        blobs: app.blobs.clone(),
        key: app.audit.key(),
        audit: app.audit.clone(),
        ledger: crate::migrations::Ledger::open(app.storage.as_ref()).map_err(ledger_error)?,
        backups: app.backups.clone(),
        actor: envelope.actor.clone(),
    })
}

/// The admin API's one migration task at a time (a rehearsal, opening or
/// closing a window), held until it ends; a second is refused at once.
fn migrating(app: &App) -> Result<tokio::sync::OwnedMutexGuard<()>, ApiError> {
    app.migrating.clone().try_lock_owned().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "migration_running",
            "a rehearsal or a migration window change is running; wait for it to end",
        )
    })
}

/// `GET`, `POST ?reason=&seconds=`, `DELETE ?reason=` `/admin/auth/emergency`
/// and `POST /admin/auth/emergency/links?account=`.
async fn emergency(
    app: &App,
    method: &Method,
    path: &str,
    query: Option<&str>,
    envelope: &Envelope,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mode = &app.emergency;
    let refused = |e: crate::oidc::emergency::EmergencyError| {
        use crate::oidc::emergency::EmergencyError as E;
        let status = match e {
            E::AlreadyOn(_) | E::Off | E::SecondAdminNeeded => StatusCode::CONFLICT,
            E::Invalid(_) | E::LinkInvalid => StatusCode::BAD_REQUEST,
            E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    };
    let text = |name: &str| {
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.into_owned())
    };
    let state = |app: &App| serde_json::to_value(app.emergency.status()).expect("serializes");
    match (method, path) {
        (&Method::GET, "/admin/auth/emergency") => Ok(super::json_response(StatusCode::OK, &state(app))),
        (&Method::POST, "/admin/auth/emergency") => {
            let reason = text("reason").unwrap_or_default();
            let seconds = query_text(query, "seconds")
                .map(str::parse)
                .transpose()
                .map_err(|_| invalid_query("seconds", "must be a whole number of seconds"))?;
            let after = mode.request(envelope, &reason, seconds).await.map_err(refused)?;
            let status = if after.on { StatusCode::OK } else { StatusCode::ACCEPTED };
            Ok(super::json_response(status, &state(app)))
        }
        (&Method::DELETE, "/admin/auth/emergency") => {
            let reason = text("reason").unwrap_or_else(|| "ended by an admin".to_owned());
            let revoked = mode.end(envelope, &reason).await.map_err(refused)?;
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "on": false, "sessions_revoked": revoked })))
        }
        (&Method::POST, "/admin/auth/emergency/links") => {
            let account = text("account").ok_or_else(|| invalid_query("account", "names the account to sign in"))?;
            let (token, expires_at) = mode.link(envelope, &account).await.map_err(refused)?;
            let base = app
                .deployment
                .load()
                .config
                .auth
                .public_base_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_owned());
            let url = format!("{}/v1/auth/emergency/{token}", base.unwrap_or_default());
            Ok(super::json_response(StatusCode::CREATED, &serde_json::json!({ "url": url, "expires_at": expires_at })))
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {method} {path}"))),
    }
}

/// `POST /admin/migrations/{name}/apply[?override=REASON]`: opens a
/// migration window for the plugin's next step while it serves (its canary,
/// if configured, is the newer version). Runs on a task of its own, so a
/// client that goes away does not cut it short.
async fn open_window(
    app: &App,
    name: &str,
    query: Option<&str>,
    envelope: &Envelope,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let entry = configured_plugin(app, name)?;
    let bench = workbench(app, envelope)?;
    let reason = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "override")
        .map(|(_, reason)| reason.into_owned());
    if reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(invalid_query("override", "must give a reason"));
    }
    let one_at_a_time = migrating(app)?;
    let (runtime, windows) = (app.runtime.clone(), app.windows.clone());
    let opened = tokio::spawn(async move {
        let _one_at_a_time = one_at_a_time;
        let opened = async {
            let plugin = crate::migrations::run::PluginMigrations::load(&runtime, &entry, &bench.ledger).await?;
            let limits = (entry.limits.memory.0, entry.limits.timeout_ms);
            windows.open(&bench, plugin, limits, reason.as_deref()).await
        }
        .await;
        if let Err(e) = &opened {
            let _ = bench.record("migration.window_opened", &entry.name, Outcome::Failure, format!("{e:#}")).await;
        }
        opened
    })
    .await
    .expect("opening a window does not panic");
    match opened {
        Ok(window) => Ok(super::json_response(
            StatusCode::CREATED,
            &serde_json::json!({ "plugin": name, "window": window, "href": "/admin/migrations" }),
        )),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, "migration_refused", format!("{e:#}"))),
    }
}

/// `POST /admin/migrations/{name}/complete` and `/abort`: closes the
/// plugin's window, keeping the newer data (complete) or the older (abort).
async fn close_window(
    app: &App,
    name: &str,
    keep_newer: bool,
    envelope: &Envelope,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let bench = workbench(app, envelope)?;
    let _one_at_a_time = migrating(app)?;
    match app.close_window(bench, name, keep_newer).await {
        Ok(kept) => {
            Ok(super::json_response(StatusCode::OK, &serde_json::json!({ "plugin": name, "data_version": kept })))
        }
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, "migration_refused", format!("{e:#}"))),
    }
}

fn ledger_error(e: crate::storage::StorageError) -> ApiError {
    tracing::error!(error = %e, "migration ledger unavailable");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "the migration ledger cannot be read")
}

fn webhook_error(e: crate::webhooks::WebhookError) -> ApiError {
    match e {
        crate::webhooks::WebhookError::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "there is no such webhook endpoint")
        }
        other => {
            tracing::error!(error = %other, "webhooks unavailable");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "webhooks_unavailable", "the webhooks cannot be read")
        }
    }
}

/// A key change that failed after its record: the failure is recorded too.
async fn signing_failed(app: &App, envelope: &Envelope, action: &str, e: crate::storage::StorageError) -> ApiError {
    tracing::error!(error = %e, "signing keys unavailable");
    let _ = app.audit.append(envelope.draft(action, "signing-keys", Outcome::Failure, Some(e.to_string()))).await;
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "the signing keys cannot be stored")
}

/// Records an operator's change durably, before it is made.
async fn audited(app: &App, draft: crate::audit::RecordDraft) -> Result<(), ApiError> {
    let stored = async {
        app.audit.append(draft).await.map_err(|e| e.to_string())?;
        app.storage.flush().await.map_err(|e| e.to_string())
    };
    stored.await.map_err(|e| {
        tracing::error!(error = %e, "audit record not stored");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit log is unavailable; nothing was changed",
        )
    })
}

fn invalid_query(name: &str, why: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("query parameter `{name}` {why}"))
}

fn query_text<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, v)| v)
}

fn query_param(query: Option<&str>, name: &str, default: u64) -> Result<u64, ApiError> {
    match query_text(query, name) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| invalid_query(name, "must be a non-negative integer")),
    }
}
