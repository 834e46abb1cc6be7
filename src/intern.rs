//! Process-wide interned C strings: one copy of each distinct value, never freed, so a pointer to
//! it stays valid until the process ends. For the few strings detcore hands to a caller's struct
//! without an owner to free them (the chief address and job identity that
//! `det_distributed_from_env` reads from a launcher's environment); the table grows only by
//! distinct values, a handful per process.

use crate::error::Result;
use parking_lot::Mutex;
use std::ffi::{CStr, CString};

static STRINGS: Mutex<Vec<&'static CStr>> = Mutex::new(Vec::new());

/// The interned copy of `s`. Fails (`InvalidArgument`) when `s` holds a NUL byte, which a C
/// string cannot.
pub fn intern(s: &str) -> Result<&'static CStr> {
    let mut all = STRINGS.lock();
    if let Some(c) = all.iter().find(|c| c.to_bytes() == s.as_bytes()) {
        return Ok(c);
    }
    let c = CString::new(s).map_err(|_| err!(InvalidArgument, "{s:?} contains a NUL byte"))?;
    let c: &'static CStr = Box::leak(c.into_boxed_c_str());
    all.push(c);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn one_copy_per_value_that_outlives_the_call() {
        let a = intern("10.0.0.1").unwrap();
        let b = intern(&String::from("10.0.0.1")).unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_ne!(intern("10.0.0.2").unwrap().as_ptr(), a.as_ptr());
        assert_eq!(a.to_str().unwrap(), "10.0.0.1");
    }

    #[test]
    fn refuses_a_nul_byte() {
        let e = intern("a\0b").unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::InvalidArgument);
        assert!(e.message().contains("NUL"), "{}", e.message());
    }
}
