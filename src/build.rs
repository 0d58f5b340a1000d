//! Cargo's build script (Cargo.toml `build`), not a module of kiln. Embeds every preset under `assets/presets/NAME/` (each file of the folder), so adding a
//! preset is adding a folder: no Rust changes. The list is `OUT_DIR/presets.rs`, included by
//! `src/engine/steps/install/preset.rs`.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/presets");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut presets: Vec<_> = std::fs::read_dir(&root)
        .expect("assets/presets")
        .map(|entry| entry.expect("assets/presets entry").path())
        .filter(|path| path.join("preset.toml").is_file())
        .collect();
    presets.sort();
    let mut code = String::from("&[\n");
    for preset in &presets {
        let name = preset.file_name().unwrap().to_string_lossy();
        let mut files: Vec<_> = std::fs::read_dir(preset)
            .expect("a preset folder")
            .map(|entry| entry.expect("a preset file").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        writeln!(code, "    ({name:?}, &[").unwrap();
        for file in files {
            let file_name = file.file_name().unwrap().to_string_lossy();
            writeln!(
                code,
                "        ({file_name:?}, include_str!({:?})),",
                file.display().to_string()
            )
            .unwrap();
        }
        code.push_str("    ]),\n");
    }
    code.push_str("]\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("presets.rs");
    std::fs::write(out, code).expect("write presets.rs");
}
