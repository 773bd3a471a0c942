//! argon2id password hashing on dedicated threads below the edge's priority,
//! so a login flood queues for hashing and uses idle cores, but cannot take
//! them from other requests.

use std::cell::RefCell;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use prometheus_client::metrics::counter::Counter;

/// Memory cost in KiB (OWASP's argon2id minimum).
pub const MEMORY_KIB: u32 = 19_456;
/// Iterations.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;
/// Longest password accepted, in bytes, so hashing time stays bounded.
pub const MAX_PASSWORD_BYTES: usize = 4096;
/// Shortest and longest new password, in characters (not bytes).
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// Characters of a password zxcvbn scores. Its cost grows faster than the
/// length (a crafted 128-character password took ~0.7 s, 32 characters
/// ~50 ms); a longer password is only stronger than its scored prefix.
pub const SCORED_CHARS: usize = 32;
/// Characters of each related word zxcvbn is given.
const RELATED_CHARS: usize = 100;

/// Refuses a new password that is too short, too long, or easy to guess
/// (zxcvbn score below 3 for its first [`SCORED_CHARS`] characters,
/// counting `related` words such as the e-mail address). No composition
/// rules. The message is for the user. CPU-bound: callers on the request
/// path use [`Passwords::check_strength`], which runs it on the hashing
/// threads.
pub fn check_strength(password: &str, related: &[String]) -> Result<(), String> {
    let chars = password.chars().count();
    if !PASSWORD_CHARS.contains(&chars) {
        return Err(format!(
            "passwords are {} to {} characters; this one has {chars}",
            PASSWORD_CHARS.start(),
            PASSWORD_CHARS.end()
        ));
    }
    // Whole inputs and their words: `ada.lovelace@example.com` also counts
    // as `ada`, `lovelace` and `example`.
    let related: Vec<String> = related.iter().map(|r| r.chars().take(RELATED_CHARS).collect()).collect();
    let mut words: Vec<&str> = related.iter().map(String::as_str).collect();
    words.extend(related.iter().flat_map(|r| r.split(|c: char| !c.is_alphanumeric())).filter(|w| w.len() >= 3));
    let scored: String = password.chars().take(SCORED_CHARS).collect();
    let entropy = zxcvbn::zxcvbn(&scored, &words);
    if u8::from(entropy.score()) >= 3 {
        return Ok(());
    }
    let feedback = entropy.feedback();
    let warning = feedback.and_then(|f| f.warning()).map(|w| w.to_string());
    let suggestion = feedback.and_then(|f| f.suggestions().first()).map(ToString::to_string);
    Err(match (warning, suggestion) {
        (Some(w), Some(s)) => format!("this password is too easy to guess: {w} {s}"),
        (Some(w), None) => format!("this password is too easy to guess: {w}"),
        (None, Some(s)) => format!("this password is too easy to guess. {s}"),
        (None, None) => "this password is too easy to guess; a few unrelated words make a strong one".to_owned(),
    })
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The password matches.
    pub valid: bool,
    /// The stored hash is weaker than the current parameters.
    pub needs_rehash: bool,
}

/// Nice value of the hashing threads. At 10 (weight 110 against the edge's
/// 1024) the scheduler runs a waiting request first and hashing still makes
/// progress when the edge is busy.
pub const HASHING_NICENESS: i32 = 10;

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies on its own threads, one hash per thread at a time
/// (each uses ~19 MiB and a core); the rest wait in the queue.
pub struct Passwords {
    /// The hashing threads' queue; they stop when it is dropped.
    jobs: mpsc::Sender<Job>,
    /// argon2 computations done, dummy verifications included.
    computed: Counter,
}

/// Most memory a stored hash may ask for, in KiB: a hash handed in by a
/// plugin (or a damaged record) cannot make a verification allocate without
/// bound.
const MAX_STORED_MEMORY_KIB: u32 = 4 * MEMORY_KIB;

thread_local! {
    /// Each hashing thread's argon2 memory, kept between hashes. A fresh
    /// 19 MiB per hash meant ~4 900 page faults each, and the allocator
    /// handing it back to the kernel stalled every thread of the process.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 over this thread's memory.
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let blocks = params.block_count();
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let result = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password,
            salt,
            out,
            &mut memory[..],
        );
        // A costlier stored hash does not leave its memory behind (a block
        // is 1 KiB, so today's parameters use `MEMORY_KIB` blocks).
        if memory.len() > MEMORY_KIB as usize {
            memory.truncate(MEMORY_KIB as usize);
            memory.shrink_to_fit();
        }
        result
    })
}

/// A PHC string of `password` with today's parameters and a fresh salt.
fn hash_with_current_parameters(password: &[u8]) -> Result<String, String> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).map_err(|e| e.to_string())?;
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0; Salt::MAX_LENGTH];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| e.to_string())?;
    let mut out = [0; Params::DEFAULT_OUTPUT_LEN];
    compute(Algorithm::Argon2id, Version::V0x13, params.clone(), password, salt_bytes, &mut out)
        .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches a parsed stored hash; `None` when the hash
/// cannot be used (unknown algorithm, missing parts, too costly).
fn matches(password: &[u8], stored: &PasswordHash<'_>, computed: &Counter) -> Option<bool> {
    let algorithm = Algorithm::try_from(stored.algorithm).ok()?;
    let version = stored.version.map(Version::try_from).transpose().ok()?.unwrap_or_default();
    let params = Params::try_from(stored).ok()?;
    if params.m_cost() > MAX_STORED_MEMORY_KIB {
        return None;
    }
    let (salt, expected) = (stored.salt?, stored.hash?);
    let mut salt_bytes = [0; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_bytes).ok()?;
    let mut out = vec![0; expected.len()];
    computed.inc();
    compute(algorithm, version, params, password, salt, &mut out).ok()?;
    // `Output` compares in constant time.
    Some(Output::new(&out).ok()? == expected)
}

/// A hash of a random password, verified when there is no stored hash so an
/// unknown account costs the same as a known one.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_with_current_parameters(b"plinth dummy password").expect("hash the dummy password"))
}

impl Passwords {
    /// A hasher with `threads` hashing threads (at least one).
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("plinth-argon2-{i}"))
                .spawn(move || {
                    // Linux keeps the nice value per thread; raising it is
                    // always permitted.
                    if let Err(e) =
                        rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHING_NICENESS)
                    {
                        tracing::warn!(error = %e, "cannot lower the hashing thread's priority");
                    }
                    loop {
                        let job = queue.lock().expect("the hashing queue lock is never poisoned").recv();
                        match job {
                            Ok(job) => job(),
                            Err(mpsc::RecvError) => return,
                        }
                    }
                })
                .expect("spawn a hashing thread");
        }
        Self { jobs, computed: Counter::default() }
    }

    /// Counts argon2 computations into this counter (the metrics').
    pub fn with_counter(mut self, computed: Counter) -> Self {
        self.computed = computed;
        self
    }

    /// Runs `work` on a hashing thread.
    /// A job whose request has gone (timed out, client left) is skipped, so
    /// the queue holds only work someone still waits for.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                if !done.is_closed() {
                    let _ = done.send(work());
                }
            }))
            .expect("the hashing threads run as long as the queue exists");
        result.await.expect("a hashing job panicked")
    }

    /// [`check_strength`] on a hashing thread.
    pub async fn check_strength(&self, password: String, related: Vec<String>) -> Result<(), String> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(format!("passwords are at most {MAX_PASSWORD_BYTES} bytes"));
        }
        self.run(move || check_strength(&password, &related)).await
    }

    /// A PHC string for the password.
    pub async fn hash(&self, password: String) -> Result<String, String> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(format!("passwords are at most {MAX_PASSWORD_BYTES} bytes"));
        }
        let computed = self.computed.clone();
        self.run(move || {
            computed.inc();
            hash_with_current_parameters(password.as_bytes())
        })
        .await
    }

    /// Checks a password against a stored hash (or, with none, a dummy).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Verdict {
        let known = stored.is_some();
        let password = if password.len() > MAX_PASSWORD_BYTES { String::new() } else { password };
        let computed = self.computed.clone();
        self.run(move || {
            // On a hashing thread: the first call computes the dummy.
            let stored = stored.as_deref().unwrap_or_else(|| dummy_hash());
            let Ok(parsed) = PasswordHash::new(stored) else {
                return Verdict { valid: false, needs_rehash: known };
            };
            // Computed whether or not the account is known: an unknown
            // address must cost what a known one does.
            let matched = matches(password.as_bytes(), &parsed, &computed) == Some(true);
            let valid = known && matched;
            Verdict { valid, needs_rehash: valid && is_weaker(&parsed) }
        })
        .await
    }
}

/// True when a stored hash is not argon2id with at least today's costs.
fn is_weaker(hash: &PasswordHash<'_>) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return true;
    };
    hash.algorithm.as_str() != "argon2id"
        || params.m_cost() < MEMORY_KIB
        || params.t_cost() < ITERATIONS
        || params.p_cost() != PARALLELISM
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn strength_counts_characters_and_refuses_common_passwords() {
        assert!(check_strength("tangerine piano voyage", &[]).is_ok());
        let short = check_strength("ab€dé", &[]).unwrap_err();
        assert!(short.contains("has 5"), "{short}");
        let long = check_strength(&"é".repeat(128), &[]);
        assert!(long.map_or_else(|e| !e.contains("characters"), |()| true), "128 two-byte characters fit");
        assert!(check_strength(&"x".repeat(129), &[]).unwrap_err().contains("129"));
        for weak in ["password123", "qwertyuiop", "iloveyou1"] {
            assert!(check_strength(weak, &[]).unwrap_err().contains("too easy"), "{weak}");
        }
        assert!(check_strength("zephyrquillborne", &[]).is_ok(), "strong without context");
        let personal = check_strength("zephyrquillborne", &["zephyr.quillborne@example.com".into()]);
        assert!(personal.is_err(), "related words count");
    }

    #[test]
    fn only_a_prefix_is_scored() {
        let weak_start = format!("{}{}", "password".repeat(4), "x7#Qv9!zR2");
        assert!(check_strength(&weak_start, &[]).is_err(), "a weak first {SCORED_CHARS} characters");
        let strong_start = format!("tangerine piano voyage cobalt{}", "a".repeat(90));
        assert!(check_strength(&strong_start, &[]).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_nobody_waits_for_is_skipped() {
        let passwords = Arc::new(Passwords::new(1));
        let (started, running) = std::sync::mpsc::channel();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        // Occupy the one thread, then queue a hash and give up on it.
        let occupier = passwords.clone();
        let busy = tokio::spawn(async move {
            occupier
                .run(move || {
                    started.send(()).unwrap();
                    hold.recv().unwrap();
                })
                .await
        });
        tokio::task::spawn_blocking(move || running.recv().unwrap()).await.unwrap();
        let before = passwords.computed.get();
        let abandoned = tokio::time::timeout(Duration::from_millis(50), passwords.hash("given up on".into())).await;
        assert!(abandoned.is_err());
        release.send(()).unwrap();
        busy.await.unwrap();
        passwords.run(|| ()).await;
        assert_eq!(passwords.computed.get(), before, "the abandoned hash never ran");
    }

    #[tokio::test]
    async fn hashes_verify_and_weak_hashes_ask_for_a_rehash() {
        let passwords = Passwords::new(2);
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        let good = passwords.verify("correct horse".into(), Some(hash.clone())).await;
        assert_eq!(good, Verdict { valid: true, needs_rehash: false });
        assert!(!passwords.verify("wrong".into(), Some(hash)).await.valid);
        let before = passwords.computed.get();
        assert!(!passwords.verify("anything".into(), None).await.valid);
        assert_eq!(passwords.computed.get(), before + 1, "an unknown account is checked against the dummy hash");

        let weak_params = Params::new(8, 1, 1, None).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, weak_params)
            .hash_password(b"old", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let verdict = passwords.verify("old".into(), Some(weak)).await;
        assert_eq!(verdict, Verdict { valid: true, needs_rehash: true });
    }

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        let passwords = Passwords::new(1);
        let ours = passwords.hash("correct horse".into()).await.unwrap();
        let reference = Argon2::default();
        assert!(reference.verify_password(b"correct horse", &PasswordHash::new(&ours).unwrap()).is_ok());
        assert!(reference.verify_password(b"correct horsf", &PasswordHash::new(&ours).unwrap()).is_err());
        let theirs = reference.hash_password(b"battery staple", &SaltString::generate(&mut OsRng)).unwrap().to_string();
        assert!(passwords.verify("battery staple".into(), Some(theirs.clone())).await.valid);
        assert!(!passwords.verify("battery stapler".into(), Some(theirs)).await.valid);
    }

    #[tokio::test]
    async fn stored_hashes_too_costly_or_damaged_never_match() {
        let passwords = Passwords::new(1);
        let costly = format!(
            "$argon2id$v=19$m={},t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
            MAX_STORED_MEMORY_KIB + 1
        );
        assert!(PasswordHash::new(&costly).is_ok(), "well-formed, only too costly");
        assert!(!passwords.verify("anything".into(), Some(costly)).await.valid);
        for damaged in [
            "",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
        ] {
            assert!(!passwords.verify("anything".into(), Some(damaged.into())).await.valid, "{damaged}");
        }
    }

    #[tokio::test]
    async fn hashing_runs_below_the_edges_priority() {
        let passwords = Passwords::new(2);
        let ours = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let theirs = passwords.run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid()))).await;
        assert_eq!(theirs.unwrap(), HASHING_NICENESS);
        assert_ne!(ours, HASHING_NICENESS, "the caller keeps its priority");
    }
}
