//! Sharing a document with named accounts (kinds with `sharing` on). Only
//! the owner grants and revokes; a revoked account loses the document at
//! its next request, and its open streams at their next heartbeat.

use plinth_kit::{Error, Request, Response, Result, kv};
use serde::Deserialize;
use serde_json::json;

use crate::store::{self, Access, Acl, acl_key, not_found, valid_id};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    access: Access,
}

/// The document's kind, id and life, for its owner: 404 for anyone who
/// cannot read it, 403 for a reader who is not the owner.
pub fn owned(req: &Request) -> Result<(crate::kinds::Kind, String, String)> {
    let me = req.signed_in()?;
    let (kind, id) = store::address(req)?;
    let loaded = store::load(&kind, &id, &me)?.ok_or_else(|| not_found(&kind, &id))?;
    if loaded.doc.owner != me.account_id {
        return Err(Error::forbidden("only the document's owner shares it"));
    }
    Ok((kind, id, loaded.doc.life))
}

/// [`owned`], and 409 when the kind does not share.
fn shared(req: &Request) -> Result<(crate::kinds::Kind, String, String)> {
    let (kind, id, life) = owned(req)?;
    if !kind.sharing {
        return Err(Error::new(409, "sharing_disabled", format!("`{}` documents are not shared", kind.name)));
    }
    Ok((kind, id, life))
}

/// Changes the grants and links of the life `life`, starting afresh from
/// those of an earlier life.
pub fn change_acl(key: &str, life: &str, change: impl Fn(&mut Acl) -> bool) -> Result<bool> {
    let mut changed = false;
    kv::update(key, None, |acl: Option<Acl>| {
        let mut acl =
            acl.filter(|acl| acl.life == life).unwrap_or_else(|| Acl { life: life.to_owned(), ..Acl::default() });
        changed = change(&mut acl);
        Ok(acl.worth_keeping().then_some(acl))
    })?;
    Ok(changed)
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
    let (kind, id, life) = shared(req)?;
    Ok(Response::json(200, &json!({ "grants": store::grants(&kind, &id, &life)? })))
}

/// `PUT .../grants/{account}` with `{"access": "read" | "write"}`.
pub fn grant(req: &Request) -> Result<Response> {
    let (kind, id, life) = shared(req)?;
    let account = grantee(req)?;
    let body: GrantBody = req.json()?;
    change_acl(&acl_key(&kind.name, &id), &life, |acl| {
        acl.grants.insert(account.clone(), body.access);
        true
    })?;
    Ok(Response::json(200, &json!({ "account": account, "access": body.access })))
}

/// `DELETE .../grants/{account}`.
pub fn revoke(req: &Request) -> Result<Response> {
    let (kind, id, life) = shared(req)?;
    let account = grantee(req)?;
    let found = change_acl(&acl_key(&kind.name, &id), &life, |acl| acl.grants.remove(&account).is_some())?;
    if !found {
        return Err(Error::not_found(format!("`{id}` is not shared with `{account}`")));
    }
    Ok(Response::empty(204))
}
