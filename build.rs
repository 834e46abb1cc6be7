//! Build script: generates the C header with cbindgen (into OUT_DIR, and into include/ when
//! DETCORE_UPDATE_HEADER=1) and gives the shared library a SONAME carrying the ABI version.

use std::env;
use std::fs;
use std::path::PathBuf;

fn abi_version(manifest: &str) -> u32 {
    let mut in_section = false;
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_section = l == "[package.metadata.detcore]";
            continue;
        }
        if in_section {
            if let Some(v) = l.strip_prefix("abi_version") {
                let v = v.trim_start().trim_start_matches('=').trim();
                return v.parse().expect("abi_version must be an integer");
            }
        }
    }
    panic!("Cargo.toml lacks [package.metadata.detcore] abi_version");
}

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let abi = abi_version(&manifest);
    let (maj, min, pat) = (
        env::var("CARGO_PKG_VERSION_MAJOR").unwrap(),
        env::var("CARGO_PKG_VERSION_MINOR").unwrap(),
        env::var("CARGO_PKG_VERSION_PATCH").unwrap(),
    );
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/capi");
    println!("cargo:rerun-if-env-changed=DETCORE_UPDATE_HEADER");
    println!("cargo:rustc-env=DETCORE_ABI_VERSION={abi}");

    // SONAME: libdetcore.so.<abi>, so that an incompatible ABI never loads silently.
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdetcore.so.{abi}");
    }

    let version_macros = format!(
        "\n#define DET_VERSION_MAJOR {maj}\n#define DET_VERSION_MINOR {min}\n#define DET_VERSION_PATCH {pat}\n\
         #define DET_VERSION_STRING \"{maj}.{min}.{pat}\"\n\
         #define DET_VERSION_NUMBER ({maj} * 10000 + {min} * 100 + {pat})\n\
         /* The ABI version: the shared library's SONAME is libdetcore.so.DET_ABI_VERSION. */\n\
         #define DET_ABI_VERSION {abi}\n"
    );
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // The version macros, then cbindgen.toml's own `after_includes` (the DET_CHECK macro).
    let after_includes = version_macros + config.after_includes.as_deref().unwrap_or("");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/capi/mod.rs"))
        .with_after_include(after_includes)
        .generate()
        .expect("cbindgen failed to generate include/detcore.h");
    bindings.write_to_file(out.join("detcore.h"));
    if env::var("DETCORE_UPDATE_HEADER")
        .map(|v| v == "1")
        .unwrap_or(false)
    {
        bindings.write_to_file(dir.join("include/detcore.h"));
    }
}
