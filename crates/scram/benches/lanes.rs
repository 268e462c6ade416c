//! CPU per verifier by batch size, beside the `sha2` crate's one chain at a time (the
//! ceiling a caller gets without this crate): `cargo bench -p pgua-scram`.
//! Times are process CPU time, so a busy machine slows the rows alike; read the ratios.

use std::time::Duration;

/// CPU time of this process.
fn cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let passwords: Vec<String> = (0..pgua_scram::LANES)
        .map(|i| format!("password-{i}-0123456789"))
        .collect();
    let salt = *b"0123456789abcdef";
    let rounds = 200;
    let per_verifier = |n: usize| {
        let inputs: Vec<pgua_scram::Input> = passwords[..n]
            .iter()
            .map(|p| pgua_scram::Input {
                password: p.as_bytes(),
                salt: &salt,
            })
            .collect();
        let started = cpu_time();
        for _ in 0..rounds {
            std::hint::black_box(pgua_scram::verifiers(std::hint::black_box(&inputs)));
        }
        (cpu_time() - started).as_secs_f64() * 1e6 / (rounds * n) as f64
    };
    let started = cpu_time();
    for _ in 0..rounds {
        std::hint::black_box(pbkdf2_with_hmac_crate(passwords[0].as_bytes(), &salt));
    }
    let plain = (cpu_time() - started).as_secs_f64() * 1e6 / rounds as f64;
    println!("the hmac crate, one chain: {plain:4.0} µs per verifier");
    let one = per_verifier(1);
    for n in 1..=pgua_scram::LANES {
        let us = if n == 1 { one } else { per_verifier(n) };
        println!(
            "{n} lane(s):                 {us:4.0} µs per verifier ({:.2} of one lane, {:.2} of the hmac crate)",
            us / one,
            us / plain
        );
    }
}

/// PBKDF2 the plain way: an HMAC per iteration, its keyed state cloned each time.
fn pbkdf2_with_hmac_crate(password: &[u8], salt: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let keyed = hmac::Hmac::<sha2::Sha256>::new_from_slice(password).expect("any key");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..pgua_scram::ITERATIONS {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}
