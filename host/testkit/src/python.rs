//! Python tools the tests need (DuckDB, moto), from PyPI, in one virtual
//! environment under the target directory: made on first use, reused after.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Serialises venv changes within a test process.
static VENV: Mutex<()> = Mutex::new(());

/// The venv's python, with `module` importable (`pip install package` when
/// it is not). `.ci/run` makes the venv ahead of the tests.
pub fn python_with(module: &str, package: &str) -> PathBuf {
    let _guard = VENV.lock().unwrap_or_else(|p| p.into_inner());
    let venv = crate::build::repo_root().join("target/weir-test-venv");
    let python = venv.join("bin/python");
    let importable = || {
        Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return python;
    }
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed");
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", package])
        .status()
        .expect("pip");
    assert!(installed.success(), "pip install {package} failed");
    assert!(
        importable(),
        "{package} installed but `import {module}` fails"
    );
    python
}
