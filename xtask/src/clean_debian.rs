//! `cargo xtask clean-debian [DEB]`: the app's package as a user meets it. A clean Debian
//! (bookworm, `debootstrap --variant=minbase`: no desktop, no GPU stack, no WebKit) gets the
//! `.deb` through apt, which must bring every library the app needs from the package's own
//! dependencies; then the GUI end-to-end test drives the installed binary
//! (`FOREXGPT_APP_BIN=/usr/bin/…`) under Xvfb inside that system, Devices tab included (the
//! CUDA section must say why CUDA is unavailable there, never that the build left it out).
//!
//! Linux only, as root (chroot and mounts), with network access to a Debian mirror
//! (`FOREXGPT_DEBIAN_MIRROR`, default deb.debian.org). DEB defaults to the newest package
//! `cargo xtask bundle` left in `target/dist/bundle/deb`. The pristine system is made once
//! and kept under `target/clean-debian/`; every run installs into a fresh copy of it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::desktop::{gui_test_executable, target_dir, tauri_driver};
use crate::{output_of, run};

/// The Debian release the check installs into: the oldest one our builds link against (the
/// development and CI machines run it), so a package that installs here installs on newer.
const SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// What the GUI test itself needs inside the clean system, installed only after the app's own
/// libraries were checked: the virtual display and WebKit's WebDriver.
const TEST_PACKAGES: &[&str] = &["xvfb", "xauth", "webkit2gtk-driver"];
/// Where the test's executables go inside the clean system.
const E2E_DIR: &str = "opt/forexgpt-e2e";

pub fn clean_debian(rest: &[String]) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("the clean-Debian check runs on Linux only (chroot into a debootstrapped system)");
    }
    if !crate::is_root() {
        bail!(
            "the clean-Debian check needs root (debootstrap, chroot and mounts): run it with sudo"
        );
    }
    let deb = match rest.first() {
        Some(path) => PathBuf::from(path),
        None => newest_bundle()?,
    };
    if !deb.is_file() {
        bail!("no package at {}", deb.display());
    }
    let package = output_of("dpkg-deb", &["-f", &deb.to_string_lossy(), "Package"])
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .with_context(|| format!("{} is not a Debian package", deb.display()))?;
    // The test build and tauri-driver come first: if they cannot be built, nothing is
    // downloaded or installed.
    let gui_test = gui_test_executable()?;
    let driver = tauri_driver()?;

    let base = target_dir().join("clean-debian");
    let pristine = pristine_system(&base)?;
    let root = base.join("root");
    if root.exists() {
        unmount_below(&root);
        // Never delete through a mount: a /dev still bound there is the host's own.
        let still = mounted_below(&root)?;
        if !still.is_empty() {
            bail!(
                "{} still has mounts ({still:?}); unmount them, then run the check again",
                root.display()
            );
        }
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let mut copy = Command::new("cp");
    copy.arg("-a").arg(&pristine).arg(&root);
    run(copy)?;
    let _mounts = Mounts::new(&root)?;
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))
        .context("copying /etc/resolv.conf into the clean system")?;

    // The package alone, with what it declares it depends on (no recommends): a library the
    // app links and the package forgets shows up below as missing.
    let name = deb
        .file_name()
        .context("the package's file name")?
        .to_string_lossy()
        .into_owned();
    std::fs::copy(&deb, root.join("tmp").join(&name))
        .with_context(|| format!("copying {} into the clean system", deb.display()))?;
    run(apt(&root, &["update", "-q"]))?;
    run(apt(
        &root,
        &[
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            &format!("/tmp/{name}"),
        ],
    ))?;
    let files = chroot_output(&root, &["dpkg", "-L", &package])?;
    let binary = files
        .lines()
        .find(|l| l.starts_with("/usr/bin/"))
        .with_context(|| format!("package {package} installs nothing under /usr/bin"))?
        .to_string();
    let linked = chroot_output(&root, &["ldd", &binary])?;
    let missing: Vec<&str> = linked.lines().filter(|l| l.contains("not found")).collect();
    if !missing.is_empty() {
        bail!(
            "{binary} from {} needs libraries its package does not bring: {missing:?}",
            deb.display()
        );
    }
    eprintln!("xtask: {package} installed on a clean Debian {SUITE}; {binary} finds every library");

    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(TEST_PACKAGES);
    run(apt(&root, &install))?;
    let e2e = root.join(E2E_DIR);
    std::fs::create_dir_all(e2e.join("screenshots"))?;
    for (from, to) in [(&gui_test, "gui"), (&driver, "tauri-driver")] {
        std::fs::copy(from, e2e.join(to))
            .with_context(|| format!("copying {} into the clean system", from.display()))?;
    }
    std::fs::create_dir_all(root.join("tmp/xdg"))?;
    let mut test = Command::new("chroot");
    test.arg(&root)
        .args([
            "env",
            "-i",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "HOME=/root",
        ])
        .arg("XDG_RUNTIME_DIR=/tmp/xdg")
        .arg(format!("TAURI_DRIVER=/{E2E_DIR}/tauri-driver"))
        .arg(format!("FOREXGPT_APP_BIN={binary}"))
        .arg(format!("FOREXGPT_SCREENSHOTS=/{E2E_DIR}/screenshots"))
        .args(["xvfb-run", "-a", "-s", "-screen 0 1280x800x24"])
        .arg(format!("/{E2E_DIR}/gui"))
        .args(["--ignored", "--nocapture"]);
    run(test)?;
    eprintln!(
        "xtask: the GUI end-to-end test passed against {binary} installed from {} on a clean \
         Debian {SUITE}; screenshots in {}",
        deb.display(),
        e2e.join("screenshots").display()
    );
    Ok(())
}

/// The newest `.deb` that `cargo xtask bundle` made (the `dist` profile).
fn newest_bundle() -> Result<PathBuf> {
    let dir = target_dir().join("dist/bundle/deb");
    let entries = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "no bundles in {}: run `cargo xtask bundle` first",
            dir.display()
        )
    })?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .with_context(|| {
            format!(
                "no .deb in {}: run `cargo xtask bundle` first",
                dir.display()
            )
        })
}

/// The debootstrapped system, made once: built under another name and renamed when complete,
/// so an interrupted run never leaves a half-made system that a later run would trust.
fn pristine_system(base: &Path) -> Result<PathBuf> {
    let pristine = base.join(SUITE);
    if pristine.join("etc/os-release").exists() {
        return Ok(pristine);
    }
    if output_of("which", &["debootstrap"]).is_none() {
        let mut install = Command::new("apt-get");
        install
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "debootstrap",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(install)?;
    }
    let partial = base.join(format!("{SUITE}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(base)?;
    let mirror = std::env::var("FOREXGPT_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .args(["--variant=minbase", SUITE])
        .arg(&partial)
        .arg(&mirror);
    run(debootstrap)?;
    std::fs::rename(&partial, &pristine)?;
    Ok(pristine)
}

/// apt-get inside the clean system, without questions.
fn apt(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .arg("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

fn chroot_output(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .output()
        .with_context(|| format!("running {args:?} in {}", root.display()))?;
    if !out.status.success() {
        bail!(
            "{args:?} in the clean system failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// /proc, /sys and /dev of the host inside the clean system, unmounted when dropped.
struct Mounts(PathBuf);

impl Mounts {
    fn new(root: &Path) -> Result<Mounts> {
        let mounts = Mounts(root.to_path_buf());
        for (args, dir) in [
            (&["-t", "proc", "proc"][..], "proc"),
            (&["-t", "sysfs", "sysfs"][..], "sys"),
            (&["--rbind", "/dev"][..], "dev"),
        ] {
            let mut mount = Command::new("mount");
            mount.args(args).arg(root.join(dir));
            run(mount)?;
        }
        // Unmounting the bound /dev must not reach the host's own mounts under it.
        let mut private = Command::new("mount");
        private.arg("--make-rslave").arg(root.join("dev"));
        run(private)?;
        Ok(mounts)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        unmount_below(&self.0);
    }
}

/// The mount points at or under `root` (from /proc/self/mounts).
fn mounted_below(root: &Path) -> Result<Vec<String>> {
    let root = root
        .canonicalize()
        .with_context(|| format!("resolving {}", root.display()))?;
    let prefix = root.to_string_lossy().into_owned();
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    Ok(mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect())
}

/// Unmounts what an earlier run (perhaps interrupted) left mounted inside `root`.
fn unmount_below(root: &Path) {
    for dir in ["dev", "sys", "proc"] {
        let path = root.join(dir);
        let _ = Command::new("umount").arg("-R").arg(&path).status();
    }
}
