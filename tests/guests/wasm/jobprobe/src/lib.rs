//! A test worker that does what its job's params say, to probe the host's
//! bounds on workers: `read <blob>` (any blob, input or not), `spin`
//! (computes forever), `hog` (grows memory forever), `make <n> ok|fail`
//! (stores n blobs, then answers or fails).

#[allow(missing_docs, unsafe_code, reason = "generated")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../../kit/wit",
        world: "plinth:platform/worker",
    });
}

use bindings::exports::plinth::platform::work::{Guest, Job};
use bindings::plinth::platform::job_blobs;

struct Probe;

impl Guest for Probe {
    fn run(job: Job) -> Result<String, String> {
        let words: Vec<&str> = job.params.split(' ').collect();
        match words.as_slice() {
            ["read", id] => Ok(match job_blobs::read(id, 0, 16) {
                Ok(bytes) => format!("read {}", String::from_utf8_lossy(&bytes)),
                Err(e) => format!("refused {e:?}"),
            }),
            ["spin"] => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_mul(31).wrapping_add(7));
                }
            }
            ["hog"] => {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                loop {
                    kept.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&kept);
                }
            }
            ["make", n, end] => {
                let n: usize = n.parse().map_err(|_| "n".to_owned())?;
                let ids: Vec<String> = (0..n)
                    .map(|i| job_blobs::create(format!("{} {i}", job.id).as_bytes()).map_err(|e| format!("{e:?}")))
                    .collect::<Result<_, _>>()?;
                if *end == "ok" { Ok(ids.join(",")) } else { Err(format!("failed after making {}", ids.len())) }
            }
            _ => Err(format!("unknown params `{}`", job.params)),
        }
    }
}

bindings::export!(Probe with_types_in bindings);
