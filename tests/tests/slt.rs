//! Runs every `tests/slt/**/*.slt` file at batch sizes 1, 7 and 1024: streaming results must
//! not depend on how input is cut into batches.
//!
//! `cargo test -p vigil-tests --test slt -- FILTER` runs the files whose path contains FILTER.

use std::path::{Path, PathBuf};

use vigil_tests::{StreamDb, workspace_root};

const BATCH_SIZES: [usize; 3] = [1, 7, 1024];

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/slt exists")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

#[tokio::main]
async fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let root = workspace_root().join("tests/slt");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        for batch_size in BATCH_SIZES {
            let mut runner =
                sqllogictest::Runner::new(move || async move { Ok(StreamDb::new(batch_size)) });
            match runner.run_file_async(&file).await {
                Ok(()) => {
                    passed += 1;
                    println!("ok      {name} (batch size {batch_size})");
                }
                Err(e) => {
                    failed += 1;
                    println!(
                        "FAILED  {name} (batch size {batch_size})\n{}",
                        e.display(true)
                    );
                }
            }
        }
    }
    println!("\nslt: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
