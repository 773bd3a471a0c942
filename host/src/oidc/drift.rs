//! A provider's behaviour as plinth relies on it, observed by probes and
//! by real sign-ins, compared with a baseline an operator accepted.
//!
//! What sign-ins depend on breaks them when it moves: the issuer, the
//! hosts of the endpoints, PKCE with S256, an algorithm the baseline had,
//! and `email_verified` beside the addresses tokens carry (without it no
//! address links). Those make the provider fail closed until an operator
//! accepts the new behaviour. Anything else that moves is a warning.
//!
//! A subject in a shape the baseline never saw (a provider switching `sub`
//! formats would map people to new accounts) refuses the sign-ins that
//! carry it and is reported, but does not fail the provider: one person
//! signing in through an unusual connection could otherwise shut everyone
//! out. What one sign-in shows never switches emergency mode on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::provider::Metadata;

/// What a provider was seen doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The issuer its discovery document names.
    pub issuer: String,
    /// Each endpoint's host (`authorization`, `token`, `jwks`).
    pub hosts: BTreeMap<String, String>,
    /// Each endpoint's path.
    pub paths: BTreeMap<String, String>,
    /// It offers PKCE with S256 (or does not say which methods it offers).
    pub s256: bool,
    /// The allowed algorithms it signs ID tokens with.
    pub algorithms: Vec<String>,
    /// It sends `iss` with authorization responses.
    pub iss_parameter: bool,
    /// The shapes of the subjects sign-ins carried (see [`subject_format`]).
    pub subject_formats: Vec<String>,
    /// The last token that carried an address carried `email_verified` too.
    pub email_verified_claim: Option<bool>,
}

/// How much a difference matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Reported; sign-ins go on.
    Warning,
    /// The provider fails closed.
    Breaking,
}

/// One difference from the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// What moved, such as `issuer` or `hosts.token`.
    pub field: String,
    /// As the baseline has it.
    pub baseline: String,
    /// As it is now.
    pub now: String,
    /// How much it matters.
    pub severity: Severity,
}

/// An accepted observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// What was accepted.
    pub observation: Observation,
    /// When (RFC 3339).
    pub accepted_at: String,
    /// By whom (`cli`, or an admin's principal).
    pub accepted_by: String,
}

fn host_and_path(url: &str) -> (String, String) {
    match url::Url::parse(url) {
        Ok(url) => (
            format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
                + &url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            url.path().to_owned(),
        ),
        Err(_) => (url.to_owned(), String::new()),
    }
}

impl Observation {
    /// What a discovery document shows, for a provider allowed `allowed`.
    pub fn of(metadata: &Metadata, allowed: &[String]) -> Self {
        let mut hosts = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for (name, url) in [
            ("authorization", &metadata.authorization_endpoint),
            ("token", &metadata.token_endpoint),
            ("jwks", &metadata.jwks_uri),
        ] {
            let (host, path) = host_and_path(url);
            hosts.insert(name.to_owned(), host);
            paths.insert(name.to_owned(), path);
        }
        let mut algorithms: Vec<String> = if metadata.id_token_signing_alg_values_supported.is_empty() {
            allowed.to_vec()
        } else {
            allowed.iter().filter(|a| metadata.id_token_signing_alg_values_supported.contains(a)).cloned().collect()
        };
        algorithms.sort();
        Self {
            issuer: metadata.issuer.clone(),
            hosts,
            paths,
            s256: metadata.code_challenge_methods_supported.as_ref().is_none_or(|m| m.iter().any(|m| m == "S256")),
            algorithms,
            iss_parameter: metadata.authorization_response_iss_parameter_supported,
            subject_formats: Vec::new(),
            email_verified_claim: None,
        }
    }

    /// The differences from `baseline`.
    pub fn drift_from(&self, baseline: &Observation) -> Vec<Drift> {
        let mut drift = Vec::new();
        let mut differ = |field: &str, then: String, now: String, severity: Severity| {
            if then != now {
                drift.push(Drift { field: field.to_owned(), baseline: then, now, severity });
            }
        };
        differ("issuer", baseline.issuer.clone(), self.issuer.clone(), Severity::Breaking);
        for (name, host) in &baseline.hosts {
            let now = self.hosts.get(name).cloned().unwrap_or_default();
            differ(&format!("hosts.{name}"), host.clone(), now, Severity::Breaking);
        }
        for (name, path) in &baseline.paths {
            let now = self.paths.get(name).cloned().unwrap_or_default();
            differ(&format!("paths.{name}"), path.clone(), now, Severity::Warning);
        }
        differ("s256", baseline.s256.to_string(), self.s256.to_string(), Severity::Breaking);
        let gone: Vec<&String> = baseline.algorithms.iter().filter(|a| !self.algorithms.contains(a)).collect();
        let severity = if gone.is_empty() { Severity::Warning } else { Severity::Breaking };
        differ("algorithms", baseline.algorithms.join(","), self.algorithms.join(","), severity);
        differ("iss_parameter", baseline.iss_parameter.to_string(), self.iss_parameter.to_string(), Severity::Warning);
        let new_formats: Vec<&String> =
            self.subject_formats.iter().filter(|f| !baseline.subject_formats.contains(f)).collect();
        if !new_formats.is_empty() && !baseline.subject_formats.is_empty() {
            differ(
                "subject_formats",
                baseline.subject_formats.join(","),
                self.subject_formats.join(","),
                Severity::Warning,
            );
        }
        if let (Some(then), Some(now)) = (baseline.email_verified_claim, self.email_verified_claim) {
            let severity = if then && !now { Severity::Breaking } else { Severity::Warning };
            differ("email_verified_claim", then.to_string(), now.to_string(), severity);
        }
        drift
    }
}

/// The shape of a subject: `uuid`, `numeric`, `hex`, `email`, `token`
/// (letters, digits, `-`, `_`) or `other`, with its length class.
pub fn subject_format(subject: &str) -> String {
    let is_uuid = subject.len() == 36
        && subject
            .char_indices()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    let kind = if is_uuid {
        "uuid"
    } else if subject.bytes().all(|b| b.is_ascii_digit()) {
        "numeric"
    } else if subject.bytes().all(|b| b.is_ascii_hexdigit()) {
        "hex"
    } else if subject.contains('@') {
        "email"
    } else if subject.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        "token"
    } else {
        "other"
    };
    let length = match subject.len() {
        0..=16 => "short",
        17..=40 => "medium",
        _ => "long",
    };
    format!("{kind}/{length}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> Metadata {
        Metadata {
            issuer: "https://id.example".into(),
            authorization_endpoint: "https://id.example/auth".into(),
            token_endpoint: "https://id.example/token".into(),
            jwks_uri: "https://keys.example/jwks".into(),
            code_challenge_methods_supported: Some(vec!["S256".into()]),
            id_token_signing_alg_values_supported: vec!["RS256".into(), "ES256".into(), "HS256".into()],
            authorization_response_iss_parameter_supported: true,
        }
    }

    fn allowed() -> Vec<String> {
        vec!["RS256".into(), "ES256".into()]
    }

    #[test]
    fn what_sign_ins_rely_on_breaks_and_the_rest_warns() {
        let baseline = Observation::of(&metadata(), &allowed());
        assert_eq!(baseline.algorithms, ["ES256", "RS256"]);
        assert!(Observation::of(&metadata(), &allowed()).drift_from(&baseline).is_empty());

        let mut moved = metadata();
        moved.token_endpoint = "https://elsewhere.example/token".into();
        moved.authorization_endpoint = "https://id.example/v2/auth".into();
        moved.id_token_signing_alg_values_supported = vec!["RS256".into()];
        moved.code_challenge_methods_supported = Some(vec!["plain".into()]);
        let drift = Observation::of(&moved, &allowed()).drift_from(&baseline);
        let field = |name: &str| drift.iter().find(|d| d.field == name).map(|d| d.severity);
        assert_eq!(field("hosts.token"), Some(Severity::Breaking));
        assert_eq!(field("paths.authorization"), Some(Severity::Warning));
        assert_eq!(field("algorithms"), Some(Severity::Breaking), "ES256 is gone");
        assert_eq!(field("s256"), Some(Severity::Breaking));
        assert_eq!(field("issuer"), None);
    }

    #[test]
    fn claims_seen_in_sign_ins_drift_too() {
        let mut baseline = Observation::of(&metadata(), &allowed());
        baseline.subject_formats = vec![subject_format("248289761001")];
        baseline.email_verified_claim = Some(true);
        let mut now = baseline.clone();
        now.subject_formats.push(subject_format("8c3e6a0e-3b1f-4f5a-9d1e-2b7c4a6f0e11"));
        now.email_verified_claim = Some(false);
        let drift = now.drift_from(&baseline);
        let severity = |field: &str| drift.iter().find(|d| d.field == field).map(|d| d.severity);
        assert_eq!(severity("subject_formats"), Some(Severity::Warning), "{drift:?}");
        assert_eq!(severity("email_verified_claim"), Some(Severity::Breaking), "{drift:?}");
        assert_eq!(subject_format("248289761001"), "numeric/short");
        assert_eq!(subject_format("ada@example.com"), "email/short");
        assert_eq!(subject_format("AItOawmwtWwcT0k51BayewNvutrJUqsvl6qs7A4"), "token/medium");
    }
}
