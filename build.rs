//! Embeds the built playground and dashboard (`playground/dist`) into the
//! binary when they exist, so `cargo run --release` serves them with nothing
//! else running. Without them the server still builds and `/` explains how to
//! produce them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().and_then(|e| e.to_str()) != Some("map") {
            files.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let dist = root.join("playground").join("dist");
    // A missing path counts as changed on every build, which would rebuild
    // the server each time; without `dist`, watch the folder it appears in
    // (scanned recursively: any change there, `dist` appearing included).
    if dist.is_dir() {
        println!("cargo:rerun-if-changed=playground/dist");
    } else {
        println!("cargo:rerun-if-changed=playground");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    walk(&dist, &mut files);
    files.sort();
    let mut out = String::from(
        "/// Built playground files: (URL path, content type, bytes).\npub static ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for file in &files {
        let rel = file.strip_prefix(&dist).expect("inside dist");
        let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
        writeln!(
            out,
            "    ({:?}, {:?}, include_bytes!({:?})),",
            url,
            content_type(file),
            file.to_string_lossy()
        )
        .expect("write to string");
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join("playground_assets.rs");
    std::fs::write(dest, out).expect("write playground_assets.rs");
}
