//! The scripts a newcomer runs first: `scripts/emulator stop` kills only emulators, and `scripts/demo` shows its
//! first build instead of five silent minutes.

use std::path::Path;
use std::process::{Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A process that is not an emulator, as a stale pid file's pid may be once reused.
struct Bystander(std::process::Child);

impl Bystander {
    fn start() -> Self {
        Self(Command::new("sleep").arg("300").spawn().unwrap())
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    fn is_alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn emulator_stop_kills_only_emulators_whatever_a_pid_file_says() {
    let mut bystander = Bystander::start();
    let stop = |state: &Path, own_pid: Option<&str>| {
        let mut command = Command::new(Path::new(ROOT).join("scripts/emulator"));
        command.arg("stop").env("CFI_EMULATOR_STATE", state).env_remove("CFI_EMULATOR_PID");
        if let Some(pid) = own_pid {
            command.env("CFI_EMULATOR_PID", pid);
        }
        assert!(command.status().unwrap().success());
    };
    let state = std::env::temp_dir().join(format!("cfi-emulator-state-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let pid_file = state.join(format!("{}.pid", bystander.pid()));

    // A shell whose CFI_EMULATOR_PID outlived its emulator.
    std::fs::write(&pid_file, bystander.pid()).unwrap();
    stop(&state, Some(&bystander.pid()));
    assert!(bystander.is_alive(), "killed a process that is not the emulator it was told of");
    assert!(!pid_file.exists(), "the stale pid file is forgotten");

    // A pid file a killed test run left behind.
    std::fs::write(&pid_file, bystander.pid()).unwrap();
    stop(&state, None);
    assert!(bystander.is_alive(), "killed a process named by a stale pid file");
    assert!(!pid_file.exists(), "the stale pid file is forgotten");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn the_demo_shows_its_build() {
    // A `cargo` that reports progress as cargo does unless told to be quiet, then fails: the demo stops there.
    let bin = std::env::temp_dir().join(format!("cfi-fake-cargo-{}", std::process::id()));
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\ncase \" $* \" in *\" --quiet \"*|*\" -q \"*) ;; *) echo '   Compiling cf-invalidator' >&2 ;; esac\nexit 1\n",
    )
    .unwrap();
    assert!(Command::new("chmod").arg("+x").arg(&cargo).status().unwrap().success());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new(Path::new(ROOT).join("scripts/demo"))
        .env("PATH", path)
        .env("CFI_EMULATOR_STATE", bin.join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&bin);
    let shown = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "the fake build fails: {shown}");
    assert!(shown.contains("== build") && shown.contains("Compiling cf-invalidator"), "{shown}");
}
