//! The checked-in header is what the sources generate, and the versions agree everywhere:
//! Cargo.toml, the header's macros, `det_version()`, and the shared library's SONAME.

use std::ffi::CStr;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/detcore.h"));
    let checked_in =
        std::fs::read_to_string(root().join("include/detcore.h")).expect("include/detcore.h");
    assert!(
        generated == checked_in,
        "include/detcore.h is out of date: regenerate it with `DETCORE_UPDATE_HEADER=1 cargo build` and commit it"
    );
}

fn cargo_field(toml: &str, key: &str) -> String {
    toml.lines()
        .find_map(|l| {
            l.trim().strip_prefix(key).map(|v| {
                v.trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"')
                    .to_owned()
            })
        })
        .unwrap_or_else(|| panic!("{key} not in Cargo.toml"))
}

fn header_macro(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("#define {name} "))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{name} not in the header"))
}

#[test]
fn versions_agree() {
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = cargo_field(&toml, "version");
    let abi = cargo_field(&toml, "abi_version");
    let header = std::fs::read_to_string(root().join("include/detcore.h")).unwrap();
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(header_macro(&header, "DET_VERSION_MAJOR"), parts[0]);
    assert_eq!(header_macro(&header, "DET_VERSION_MINOR"), parts[1]);
    assert_eq!(header_macro(&header, "DET_VERSION_PATCH"), parts[2]);
    assert_eq!(
        header_macro(&header, "DET_VERSION_STRING"),
        format!("\"{version}\"")
    );
    assert_eq!(header_macro(&header, "DET_ABI_VERSION"), abi);

    let runtime = unsafe { CStr::from_ptr(detcore::capi::core::det_version()) }
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(runtime, version);
    let n: u32 = parts
        .iter()
        .map(|p| p.parse::<u32>().unwrap())
        .fold(0, |acc, p| acc * 100 + p);
    assert_eq!(detcore::capi::core::det_version_number(), n);

    // The cdylib next to this test's deps folder: target/<profile>/libdetcore.so.
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libdetcore.so");
    if !lib.exists() {
        // `cargo test` builds the library as an rlib only; build the shared library too.
        let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--lib", "--quiet", "--manifest-path"])
            .arg(root().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("cargo");
        assert!(status.success(), "cargo build --lib failed");
    }
    assert!(lib.exists(), "{} not built", lib.display());
    let out = std::process::Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("readelf (binutils) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("Library soname: [libdetcore.so.{abi}]");
    assert!(
        text.contains(&want),
        "SONAME of {} is not libdetcore.so.{abi}:\n{text}",
        lib.display()
    );
}
