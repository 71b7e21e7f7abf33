//! The data dir and the secrets kept in it: created private (0700, files 0600), refused when others can read it.
//!
//! The data dir holds the embedded store (every device's Digest H(A1) and AuthNoti secret), the event files and
//! the generated admin token and nonce key (docs/security.md). A Digest login works from an H(A1) read out of
//! the store, so a data dir that other users can read is refused unless `--allow-shared-data-dir` says so.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};

/// Where the operator API token is kept when it is generated (0600).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Where the Digest nonce key is kept (0600).
pub const NONCE_KEY_FILE: &str = "nonce-key";

/// From now on every file and directory this process creates is its owner's only (umask 077), whatever
/// writes it: the embedded store, the event segments, the secrets.
#[cfg(unix)]
pub fn private_files_from_now_on() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

#[cfg(not(unix))]
pub fn private_files_from_now_on() {}

/// Creates `dir` (0700) if it does not exist; refuses one that other users can read, write or enter.
pub fn prepare_data_dir(dir: &Path, allow_shared: bool) -> anyhow::Result<()> {
    create_private_dir(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let shared_bits = shared_mode_bits(dir).with_context(|| format!("cannot read data dir {}", dir.display()))?;
    if shared_bits != 0 && !allow_shared {
        bail!(
            "data dir {} is open to other users (mode {:03o}) while it holds every device's secrets: \
             run `chmod 700 {}`, or start with --allow-shared-data-dir",
            dir.display(),
            shared_bits,
            dir.display()
        );
    }
    if shared_bits != 0 {
        tracing::warn!(data_dir = %dir.display(), mode = format!("{shared_bits:03o}"), "data dir open to other users");
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// The group and other permission bits of `path` (0 when only its owner may use it).
#[cfg(unix)]
fn shared_mode_bits(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o077)
}

#[cfg(not(unix))]
fn shared_mode_bits(path: &Path) -> std::io::Result<u32> {
    std::fs::metadata(path).map(|_| 0)
}

/// Reads a hex secret from `path`, or creates it (32 random bytes, file mode 0600) on first start.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim().to_owned();
            if secret.is_empty() {
                bail!("{} is empty: delete it to have a new secret generated", path.display());
            }
            return Ok(secret);
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private_file(path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secret)
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// A secret every node derives alike from the admin token they share, for `purpose`.
pub fn derived_secret(admin_token: &str, purpose: &str) -> Vec<u8> {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"omadm:");
    hasher.update(purpose.as_bytes());
    hasher.update([0u8]);
    hasher.update(admin_token.as_bytes());
    hasher.finalize().to_vec()
}

/// The operator API token and where it came from.
pub enum AdminToken {
    Given(String),
    Stored(String),
}

impl AdminToken {
    pub fn value(&self) -> &str {
        match self {
            AdminToken::Given(token) | AdminToken::Stored(token) => token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        let first = load_or_create_secret(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_secret(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn derived_secrets_differ_by_purpose_and_token() {
        assert_eq!(derived_secret("token-1", "internal"), derived_secret("token-1", "internal"));
        assert_ne!(derived_secret("token-1", "internal"), derived_secret("token-1", "nonce-key"));
        assert_ne!(derived_secret("token-1", "internal"), derived_secret("token-2", "internal"));
    }

    #[cfg(unix)]
    #[test]
    fn a_data_dir_others_can_read_is_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt as _;
        let parent = tempfile::tempdir().unwrap();
        let fresh = parent.path().join("a/b");
        prepare_data_dir(&fresh, false).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = prepare_data_dir(&fresh, false).unwrap_err().to_string();
        assert!(error.contains("mode 055") && error.contains("chmod 700"), "{error}");
        prepare_data_dir(&fresh, true).unwrap();
    }
}
