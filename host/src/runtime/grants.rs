//! Which imports a component may have, and which grant each one needs.
//!
//! Deny by default: an import is allowed only when it is the base contract
//! (`plinth:platform/types`, `settings`, `log`, `schemas`, `messages`
//! and `assets`, which reach nothing outside the plugin), the WASI baseline
//! (with nothing inherited; `wasi:sockets` linked with every operation
//! refused, since language runtimes import it whether they use it or not),
//! `wasi:http/types`, or a host interface the plugin's grants list.
//!
//! A component is one of two kinds, by what it exports: a plinth plugin
//! (`plinth:platform/handler`) or a standard `wasi:http` proxy component
//! (`wasi:http/incoming-handler`).

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::config::Grant;

/// The WIT package version this host implements.
pub const PLATFORM_VERSION: &str = "0.1.0";
/// The export every plugin must have.
pub const HANDLER_EXPORT: &str = "plinth:platform/handler@0.1.0";
/// The export of a standard `wasi:http` proxy component (any 0.2.x).
pub const INCOMING_HANDLER_EXPORT: &str = "wasi:http/incoming-handler@0.2";
/// The export every worker must have.
pub const WORK_EXPORT: &str = "plinth:platform/work@0.1.0";
/// The one interface a worker reaches beyond the base: its job's blobs.
const JOB_BLOBS_IMPORT: &str = "plinth:platform/job-blobs";
/// What a worker reads of its submitting plugin's storage.
const JOB_KV_IMPORT: &str = "plinth:platform/job-kv";

/// What a component import requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Always linked: the platform types and the WASI baseline.
    Base,
    /// Linked only with this grant.
    Grant(Grant),
    /// Linked, and every call refused; the reason says why.
    Inert(String),
    /// Never linked; the reason says why.
    Refused(String),
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Base => f.write_str("always available"),
            Need::Grant(g) => write!(f, "grant `{g}`"),
            Need::Inert(why) => write!(f, "linked, every call refused: {why}"),
            Need::Refused(why) => write!(f, "not available: {why}"),
        }
    }
}

/// Classifies one import name, such as `plinth:platform/kv@0.1.0`.
pub fn need_of(import: &str) -> Need {
    let (path, version) = import.split_once('@').unwrap_or((import, ""));
    let Some((package, interface)) = path.split_once('/') else {
        return Need::Refused("plinth provides only interfaces of `plinth:platform` and WASI".into());
    };
    match package {
        "plinth:platform" => {
            if !version.starts_with("0.1.") {
                return Need::Refused(format!(
                    "this host implements plinth:platform@{PLATFORM_VERSION}, not @{version}"
                ));
            }
            match interface {
                "types" => Need::Base,
                "kv" => Need::Grant(Grant::Kv),
                "log" => Need::Base,
                "audit" => Need::Grant(Grant::Audit),
                "principals" => Need::Grant(Grant::Principals),
                "sessions" => Need::Grant(Grant::Sessions),
                "passwords" => Need::Grant(Grant::Passwords),
                "outbox" => Need::Grant(Grant::Outbox),
                "signing" => Need::Grant(Grant::Signing),
                "events" => Need::Grant(Grant::Events),
                "blobs" => Need::Grant(Grant::Blobs),
                "jobs" => Need::Grant(Grant::Jobs),
                "webhooks" => Need::Grant(Grant::Webhooks),
                "job-blobs" => Need::Refused("the blobs of a worker's job; a plugin uses `blobs`".into()),
                "job-kv" => Need::Refused("a worker's view of its job's records; a plugin uses `kv`".into()),
                "settings" => Need::Base,
                "schemas" => Need::Base,
                "messages" => Need::Base,
                "assets" => Need::Base,
                other => Need::Refused(format!("plinth:platform has no interface `{other}`")),
            }
        }
        "wasi:sockets" if version.starts_with("0.2.") => {
            Need::Inert("no sockets (outgoing HTTP is `wasi:http/outgoing-handler`, grant `outgoing-http`)".into())
        }
        "wasi:http" if version.starts_with("0.2.") => match interface {
            "types" => Need::Base,
            "outgoing-handler" => Need::Grant(Grant::OutgoingHttp),
            other => Need::Refused(format!("a component exports `wasi:http/{other}`, it does not import it")),
        },
        "wasi:cli" | "wasi:io" | "wasi:clocks" | "wasi:random" | "wasi:filesystem" if version.starts_with("0.2.") => {
            Need::Base
        }
        _ => Need::Refused("plinth provides only interfaces of `plinth:platform` and WASI 0.2".into()),
    }
}

/// A component's imports and exports by name.
#[derive(Debug, Clone)]
pub struct Surface {
    /// Imported interface names, sorted.
    pub imports: Vec<String>,
    /// Exported interface names, sorted.
    pub exports: Vec<String>,
}

/// Reads the import and export names of a compiled component.
pub fn surface(engine: &Engine, component: &Component) -> Surface {
    let ty = component.component_type();
    let mut imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_owned()).collect();
    let mut exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    imports.sort();
    exports.sort();
    Surface { imports, exports }
}

/// Which contract a component serves requests through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plinth plugin: `plinth:platform/handler`.
    Plinth,
    /// A standard `wasi:http` proxy component: `wasi:http/incoming-handler`.
    Proxy,
}

impl Kind {
    /// What `plinth plugin inspect` calls it.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Plinth => "a plinth plugin (exports plinth:platform/handler; it declares its routes)",
            Kind::Proxy => {
                "a wasi:http proxy component (exports wasi:http/incoming-handler; it serves the routes its \
                 [[plugins]] entry lists)"
            }
        }
    }
}

/// The kind of a component, by its exports.
pub fn kind(surface: &Surface) -> Result<Kind, GrantError> {
    let plinth = surface.exports.iter().any(|e| e == HANDLER_EXPORT);
    let proxy = surface
        .exports
        .iter()
        .any(|e| e.starts_with(INCOMING_HANDLER_EXPORT) && e[INCOMING_HANDLER_EXPORT.len()..].starts_with('.'));
    match (plinth, proxy) {
        (true, false) => Ok(Kind::Plinth),
        (false, true) => Ok(Kind::Proxy),
        (true, true) => Err(GrantError::BothHandlers),
        (false, false) => Err(GrantError::NoHandler { exports: surface.exports.join(", ") }),
    }
}

/// Why a component may not run with the grants it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// It imports a host interface its grants do not list.
    #[error(
        "imports `{import}`, which needs grant `{grant}`; its grants are [{granted}]; add \"{grant}\" to its grants to allow it"
    )]
    NotGranted {
        /// The import.
        import: String,
        /// The grant it needs.
        grant: Grant,
        /// What it has.
        granted: String,
    },
    /// It imports something plinth never provides.
    #[error("imports `{import}`, which is {reason}")]
    Refused {
        /// The import.
        import: String,
        /// Why.
        reason: String,
    },
    /// It exports neither handler.
    #[error(
        "exports neither `{HANDLER_EXPORT}` (build it against the `plinth:platform/plugin` world) nor \
         `wasi:http/incoming-handler@0.2.x` (a standard wasi:http proxy component); it exports [{exports}]"
    )]
    NoHandler {
        /// What it does export.
        exports: String,
    },
    /// It exports both handlers, and the host would not know which to call.
    #[error("exports both `{HANDLER_EXPORT}` and `wasi:http/incoming-handler`; a plugin serves requests through one")]
    BothHandlers,
    /// A worker lacks the work export.
    #[error("does not export `{WORK_EXPORT}`; build it against the `plinth:platform/worker` world")]
    NoWork,
}

/// Checks a component's surface against its grants; returns its kind.
pub fn check(surface: &Surface, grants: &[Grant]) -> Result<Kind, GrantError> {
    let kind = kind(surface)?;
    for import in &surface.imports {
        match need_of(import) {
            Need::Base | Need::Inert(_) => {}
            Need::Grant(grant) if grants.contains(&grant) => {}
            Need::Grant(grant) => {
                return Err(GrantError::NotGranted {
                    import: import.clone(),
                    grant,
                    granted: grants.iter().map(|g| g.name()).collect::<Vec<_>>().join(", "),
                });
            }
            Need::Refused(reason) => {
                return Err(GrantError::Refused {
                    import: import.clone(),
                    reason: format!("not available to plugins: {reason}"),
                });
            }
        }
    }
    Ok(kind)
}

/// Checks a worker's surface: WASI, `log`, its job's blobs and records,
/// nothing else of the plugin world (a worker's linker has nothing else),
/// and the work export.
pub fn check_worker(surface: &Surface) -> Result<(), GrantError> {
    for import in &surface.imports {
        let job_blobs = import.split_once('@').is_some_and(|(path, version)| {
            (path == JOB_BLOBS_IMPORT || path == JOB_KV_IMPORT) && version.starts_with("0.1.")
        });
        let plugin_only = import.starts_with("plinth:platform/") && !import.starts_with("plinth:platform/log@");
        match need_of(import) {
            _ if job_blobs => {}
            Need::Base | Need::Inert(_) if plugin_only => {
                return Err(GrantError::Refused {
                    import: import.clone(),
                    reason: "not available to workers: a worker imports only WASI, `log`, `job-blobs` and `job-kv`"
                        .into(),
                });
            }
            Need::Base | Need::Inert(_) => {}
            Need::Grant(grant) => {
                return Err(GrantError::Refused {
                    import: import.clone(),
                    reason: format!(
                        "not available to workers: it needs grant `{grant}`, and a worker reaches only its job's \
                         blobs (`{JOB_BLOBS_IMPORT}`)"
                    ),
                });
            }
            Need::Refused(reason) => {
                return Err(GrantError::Refused {
                    import: import.clone(),
                    reason: format!("not available to workers: {reason}"),
                });
            }
        }
    }
    if !surface.exports.iter().any(|e| e == WORK_EXPORT) {
        return Err(GrantError::NoWork);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_classified() {
        let cases = [
            ("plinth:platform/types@0.1.0", Need::Base),
            ("plinth:platform/kv@0.1.0", Need::Grant(Grant::Kv)),
            ("plinth:platform/log@0.1.3", Need::Base),
            ("plinth:platform/audit@0.1.0", Need::Grant(Grant::Audit)),
            ("wasi:cli/environment@0.2.6", Need::Base),
            ("wasi:io/streams@0.2.0", Need::Base),
            ("wasi:http/types@0.2.4", Need::Base),
            ("wasi:http/outgoing-handler@0.2.0", Need::Grant(Grant::OutgoingHttp)),
        ];
        for (import, need) in cases {
            assert_eq!(need_of(import), need, "{import}");
        }
        assert!(matches!(need_of("wasi:sockets/tcp@0.2.9"), Need::Inert(_)));
        for refused in [
            "wasi:sockets/tcp@0.3.0",
            "wasi:http/incoming-handler@0.2.0",
            "wasi:http/types@0.3.0",
            "plinth:platform/kv@0.2.0",
            "plinth:platform/teleport@0.1.0",
            "acme:evil/api@1.0.0",
            "wasi:cli/environment@0.3.0",
        ] {
            assert!(matches!(need_of(refused), Need::Refused(_)), "{refused}");
        }
    }

    #[test]
    fn a_worker_imports_only_wasi_log_and_its_jobs_blobs_and_records() {
        let worker = |import: &str| Surface { imports: vec![import.into()], exports: vec![WORK_EXPORT.into()] };
        for allowed in ["plinth:platform/log@0.1.0", "plinth:platform/job-kv@0.1.0", "wasi:io/streams@0.2.6"] {
            assert_eq!(check_worker(&worker(allowed)), Ok(()), "{allowed}");
        }
        for plugin_only in
            ["plinth:platform/settings@0.1.0", "plinth:platform/messages@0.1.0", "plinth:platform/kv@0.1.0"]
        {
            assert!(check_worker(&worker(plugin_only)).is_err(), "{plugin_only}");
        }
    }

    #[test]
    fn ungranted_import_names_the_grant() {
        let surface =
            Surface { imports: vec!["plinth:platform/kv@0.1.0".into()], exports: vec![HANDLER_EXPORT.into()] };
        let err = check(&surface, &[Grant::Log]).unwrap_err().to_string();
        assert!(
            err.contains("`plinth:platform/kv@0.1.0`") && err.contains("grant `kv`") && err.contains("[log]"),
            "{err}"
        );
        assert_eq!(check(&surface, &[Grant::Kv]), Ok(Kind::Plinth));
        let no_handler = Surface { imports: vec![], exports: vec!["acme:thing/run@1.0.0".into()] };
        let err = check(&no_handler, &[]).unwrap_err().to_string();
        assert!(err.contains("exports neither") && err.contains("[acme:thing/run@1.0.0]"), "{err}");
    }

    #[test]
    fn a_component_is_a_plugin_or_a_proxy_by_its_export() {
        let exports =
            |names: &[&str]| Surface { imports: vec![], exports: names.iter().map(|n| n.to_string()).collect() };
        assert_eq!(kind(&exports(&["wasi:http/incoming-handler@0.2.0"])), Ok(Kind::Proxy));
        assert_eq!(kind(&exports(&["wasi:http/incoming-handler@0.2.12"])), Ok(Kind::Proxy));
        assert!(kind(&exports(&["wasi:http/incoming-handler@0.20.0"])).is_err(), "0.20 is not 0.2");
        assert!(kind(&exports(&["wasi:http/incoming-handler@0.3.0-rc"])).is_err());
        assert_eq!(
            kind(&exports(&[HANDLER_EXPORT, "wasi:http/incoming-handler@0.2.0"])),
            Err(GrantError::BothHandlers)
        );
    }
}
