//! Booting a firmware ELF in QEMU's `mps2-an386` (Cortex-M4F) and decoding its defmt output.
//!
//! The same command line as the example's cargo runner: QEMU's stdout carries only defmt frames
//! (no serial, monitor or display), which are piped into `defmt-print -e <elf>`. The firmware
//! ends QEMU with a semihosting exit, whose status becomes QEMU's.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// What to boot and what to attach.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    pub elf: &'a Path,
    /// A file for QEMU's generic loader and the address it goes to (the policy region).
    pub policy: Option<(&'a Path, u64)>,
    /// A TCG plugin (`.so`) and its `key=value` arguments.
    pub plugin: Option<(&'a Path, Vec<String>)>,
    /// QEMU is killed after this long (a firmware that never exits).
    pub timeout: Duration,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Run {
    /// QEMU's exit status: the firmware's semihosting exit code (`None`: killed).
    pub status: ExitStatus,
    /// The decoded defmt log, one message per line.
    pub log: String,
    /// QEMU's and defmt-print's stderr, for diagnostics.
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Run {
    /// The exit code (`None` if QEMU was killed).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// QEMU's option syntax separates suboptions with commas; a comma in a value is written twice.
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| Error(format!("path is not UTF-8: {}", p.display())))
}

/// The `qemu-system-arm` arguments for `boot`.
pub fn qemu_args(boot: &Boot<'_>) -> Result<Vec<String>> {
    let mut args: Vec<String> = [
        "-cpu",
        "cortex-m4",
        "-machine",
        "mps2-an386",
        "-display",
        "none",
        "-serial",
        "null",
        "-monitor",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
    ]
    .map(String::from)
    .to_vec();
    if let Some((file, addr)) = boot.policy {
        args.push("-device".into());
        args.push(format!(
            "loader,file={},addr={addr:#x}",
            qemu_escape(path_str(file)?)
        ));
    }
    if let Some((so, plugin_args)) = &boot.plugin {
        let mut spec = qemu_escape(path_str(so)?);
        for a in plugin_args {
            spec.push(',');
            spec.push_str(&qemu_escape(a));
        }
        args.push("-plugin".into());
        args.push(spec);
    }
    args.push("-kernel".into());
    args.push(path_str(boot.elf)?.to_string());
    Ok(args)
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<(ExitStatus, bool)> {
    let start = Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::ctx("waiting for qemu", e))?
        {
            return Ok((status, false));
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let status = child.wait().map_err(|e| Error::ctx("killing qemu", e))?;
            return Ok((status, true));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Boots `boot.elf` in QEMU and returns its decoded log and exit status.
pub fn run(boot: &Boot<'_>) -> Result<Run> {
    let start = Instant::now();
    let mut qemu = Command::new("qemu-system-arm")
        .args(qemu_args(boot)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::ctx("starting qemu-system-arm", e))?;
    let frames = qemu
        .stdout
        .take()
        .ok_or_else(|| Error("qemu stdout not captured".into()))?;
    let decoder = Command::new("defmt-print")
        .arg("-e")
        .arg(boot.elf)
        .stdin(Stdio::from(frames))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut decoder = match decoder {
        Ok(d) => d,
        Err(e) => {
            let _ = qemu.kill();
            let _ = qemu.wait();
            return Err(Error::ctx("starting defmt-print", e));
        }
    };
    let qemu_err = qemu.stderr.take().map(drain);
    let log = decoder.stdout.take().map(drain);
    let dec_err = decoder.stderr.take().map(drain);
    let (status, timed_out) = wait_with_timeout(&mut qemu, boot.timeout)?;
    // QEMU's exit closes the pipe, so the decoder finishes on its own.
    let _ = decoder.wait();
    let join =
        |h: Option<thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let mut stderr = join(qemu_err);
    stderr.push_str(&join(dec_err));
    Ok(Run {
        status,
        log: join(log),
        stderr,
        elapsed: start.elapsed(),
        timed_out,
    })
}

/// Compiles the instruction-counting plugin (`tools/qemu-plugin/insn_window.c`) into `out_dir`.
pub fn build_plugin(out_dir: &Path) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-plugin/insn_window.c");
    std::fs::create_dir_all(out_dir).map_err(|e| Error::ctx(out_dir.display(), e))?;
    let so = out_dir.join("insn_window.so");
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o"])
        .arg(&so)
        .arg(&src)
        .output()
        .map_err(|e| Error::ctx("running gcc", e))?;
    if !out.status.success() {
        return Err(Error(format!(
            "gcc failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(so)
}
