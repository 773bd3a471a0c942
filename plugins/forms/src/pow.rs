//! Proof of work, compatible with the ALTCHA widget: the client must find
//! the number the form hid, which costs it (on average) half of
//! `max_number` SHA-256 hashes and costs the server one.
//!
//! A challenge is `{algorithm, challenge, maxnumber, salt, signature}`:
//! `challenge` is SHA-256 of `salt` followed by the secret number, `salt`
//! ends with `?expires=<unix seconds>`, and `signature` is a token signed
//! under this plugin's key naming the challenge and the form (opaque to the
//! widget, which sends it back). The answer is the widget's payload:
//! base64 of `{algorithm, challenge, number, salt, signature}`. Each
//! challenge is taken once (`pow/{expires}/{challenge}`); the records of
//! expired ones are swept by later answers.

use base64::Engine as _;
use plinth_kit::{Error, Request, Response, Result, kv, signing};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{render, store};

/// The purpose challenge signatures are signed for.
const PURPOSE: &str = "forms.pow";
/// How long a challenge can be answered.
const LIFETIME: u64 = 20 * 60;
/// Used-challenge records one answer sweeps.
const SWEEP: u32 = 20;

/// A challenge, as the ALTCHA widget reads it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Challenge {
    algorithm: String,
    challenge: String,
    maxnumber: u64,
    salt: String,
    signature: String,
}

/// What the widget answers.
#[derive(Deserialize)]
struct Answer {
    algorithm: String,
    challenge: String,
    number: u64,
    salt: String,
    signature: String,
}

/// What a signature names: the whole challenge, so that no part of an
/// answer is the client's to choose but the number.
#[derive(Serialize, Deserialize)]
struct Signed {
    #[serde(rename = "c")]
    challenge: String,
    #[serde(rename = "f")]
    form: String,
    #[serde(rename = "s")]
    salt: String,
    #[serde(rename = "m")]
    max_number: u64,
    #[serde(rename = "e")]
    expires: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(salt: &str, number: u64) -> String {
    hex(&Sha256::digest(format!("{salt}{number}").as_bytes()))
}

/// A new challenge for form `id`, hiding a number up to `max_number`.
pub fn challenge(id: &str, max_number: u64) -> Result<Challenge> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the host provides randomness");
    let number = u64::from_le_bytes(random) % (max_number + 1);
    let expires = store::now() + LIFETIME;
    let salt = format!("{}?expires={expires}", plinth_kit::new_id());
    let challenge = hash(&salt, number);
    let signed = Signed { challenge: challenge.clone(), form: id.to_owned(), salt: salt.clone(), max_number, expires };
    let signed = serde_json::to_vec(&signed).expect("serializes");
    let signature = signing::sign(PURPOSE, &signed, Some(expires)).map_err(Error::unavailable)?;
    Ok(Challenge { algorithm: "SHA-256".into(), challenge, maxnumber: max_number, salt, signature })
}

/// `GET /v1/forms/{id}/challenge`: a fresh challenge (the ALTCHA widget's
/// `challengeurl`); 404 when the form asks for no proof of work.
pub fn serve(req: &Request) -> Result<Response> {
    let id: String = req.param("id")?;
    let form = store::load(&id)?;
    render::may_submit(req, &form.definition)?;
    let Some(pow) = &form.definition.settings.proof_of_work else {
        return Err(Error::new(404, "no_proof_of_work", format!("form `{id}` asks for no proof of work")));
    };
    Ok(Response::json(200, &challenge(&id, pow.max_number)?).header("cache-control", "no-store"))
}

/// Checks the answer to a challenge of form `id` and takes the challenge:
/// 403 `proof_of_work_required`, `invalid_proof_of_work` or
/// `proof_of_work_replayed`.
pub fn redeem(id: &str, payload: Option<&str>) -> Result<()> {
    let invalid = |why: &str| Error::new(403, "invalid_proof_of_work", format!("the proof of work {why}")).at("proof");
    let Some(payload) = payload else {
        return Err(Error::new(
            403,
            "proof_of_work_required",
            "this form asks for a proof of work: solve its challenge",
        )
        .at("proof"));
    };
    // The widget's `btoa`: standard base64, padded.
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(payload.trim()).map_err(|_| invalid("is not base64"))?;
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| invalid("is not an answer"))?;
    if answer.algorithm != "SHA-256" {
        return Err(invalid("uses another algorithm"));
    }
    let signed = signing::verify(PURPOSE, &answer.signature).map_err(|e| match e {
        signing::Error::Expired(_) => invalid("came too late; solve a new challenge"),
        _ => invalid("was not made here"),
    })?;
    let signed: Signed = serde_json::from_slice(&signed).map_err(|_| invalid("was not made here"))?;
    if signed.form != id {
        return Err(invalid("was made for another form"));
    }
    // The salt and the range are the signed ones: moving the boundary
    // between salt and number (the same string hashed) is another answer
    // to no challenge.
    if signed.challenge != answer.challenge || signed.salt != answer.salt || answer.number > signed.max_number {
        return Err(invalid("does not answer the challenge it names"));
    }
    if hash(&signed.salt, answer.number) != signed.challenge {
        return Err(invalid("does not solve its challenge"));
    }
    let record = format!("pow/{:010}/{}", signed.expires, signed.challenge);
    if kv::insert_json(&record, &json!({ "form": id }))?.is_none() {
        return Err(Error::new(403, "proof_of_work_replayed", "this challenge was answered already; solve a new one")
            .at("proof"));
    }
    sweep()
}

/// Removes the records of challenges that can no longer be answered.
fn sweep() -> Result<()> {
    let now = store::now();
    let page = kv::scan_prefix("pow/", None, SWEEP)?;
    let expired: Vec<kv::Op> = page
        .entries
        .into_iter()
        .take_while(|e| e.key.get(4..14).and_then(|t| t.parse::<u64>().ok()).is_some_and(|t| t < now))
        .map(|e| kv::Op::Delete(e.key))
        .collect();
    if !expired.is_empty() {
        kv::batch(&expired)?;
    }
    Ok(())
}
