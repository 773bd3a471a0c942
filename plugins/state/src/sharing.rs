//! Sharing a document with named accounts (kinds with `sharing` on). Only
//! the owner grants and revokes; a revoked account loses the document at
//! its next request, and its open streams at their next heartbeat.

use plinth_kit::{Error, Request, Response, Result, kv};
use serde::Deserialize;
use serde_json::json;

use crate::store::{self, Access, Grants, acl_key, not_found, valid_id};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    access: Access,
}

/// The document's kind, id and the owner's proof: 404 for anyone who cannot
/// read it, 403 for a reader who is not the owner, 409 when the kind does
/// not share.
fn owned(req: &Request) -> Result<(crate::kinds::Kind, String)> {
    let me = req.signed_in()?;
    let (kind, id) = store::address(req)?;
    let loaded = store::load(&kind, &id, &me)?.ok_or_else(|| not_found(&kind, &id))?;
    if loaded.doc.owner != me.account_id {
        return Err(Error::forbidden("only the document's owner shares it"));
    }
    if !kind.sharing {
        return Err(Error::new(409, "sharing_disabled", format!("`{}` documents are not shared", kind.name)));
    }
    Ok((kind, id))
}

fn grantee(req: &Request) -> Result<String> {
    let account: String = req.param("account")?;
    if !valid_id(&account) {
        return Err(
            Error::new(400, "invalid_param", "an account id is 1 to 128 of A-Z, a-z, 0-9, `-`, `_`").at("account")
        );
    }
    Ok(account)
}

/// `GET .../grants`.
pub fn list(req: &Request) -> Result<Response> {
    let (kind, id) = owned(req)?;
    Ok(Response::json(200, &json!({ "grants": store::grants(&kind, &id)? })))
}

/// `PUT .../grants/{account}` with `{"access": "read" | "write"}`.
pub fn grant(req: &Request) -> Result<Response> {
    let (kind, id) = owned(req)?;
    let account = grantee(req)?;
    let body: GrantBody = req.json()?;
    kv::update(&acl_key(&kind.name, &id), None, |grants: Option<Grants>| {
        let mut grants = grants.unwrap_or_default();
        grants.insert(account.clone(), body.access);
        Ok(Some(grants))
    })?;
    Ok(Response::json(200, &json!({ "account": account, "access": body.access })))
}

/// `DELETE .../grants/{account}`.
pub fn revoke(req: &Request) -> Result<Response> {
    let (kind, id) = owned(req)?;
    let account = grantee(req)?;
    let mut found = false;
    kv::update(&acl_key(&kind.name, &id), None, |grants: Option<Grants>| {
        let mut grants = grants.unwrap_or_default();
        found = grants.remove(&account).is_some();
        Ok((!grants.is_empty()).then_some(grants))
    })?;
    if !found {
        return Err(Error::not_found(format!("`{id}` is not shared with `{account}`")));
    }
    Ok(Response::empty(204))
}
