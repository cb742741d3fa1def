//! The state directory is the user's alone: the directory 0700, the database, the key
//! file and drafts 0600. `run`, `plan` and `jobs` check this on start and warn with the
//! command that fixes it, since a looser mode usually comes from a copy or an archive
//! that the program should not silently second-guess.

use std::fmt;
use std::path::{Path, PathBuf};

/// A path readable or writable by someone other than its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loose {
    pub path: PathBuf,
    pub mode: u32,
    /// The mode the policy expects: 0o700 for directories, 0o600 for files.
    pub expected: u32,
}

impl fmt::Display for Loose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is open to other users (mode {:o}, expected {:o})",
            self.path.display(),
            self.mode,
            self.expected
        )
    }
}

impl Loose {
    /// The command that fixes it.
    pub fn hint(&self) -> String {
        format!("chmod {:o} '{}'", self.expected, self.path.display())
    }
}

/// Every private path under `state_dir` (and the key file) whose mode lets others in.
/// Paths that do not exist yet are fine: they are created private.
pub fn check(state_dir: &Path, key_file: &Path) -> Vec<Loose> {
    let mut loose = Vec::new();
    inspect(state_dir, 0o700, &mut loose);
    inspect(&state_dir.join(crate::store::DB_FILE), 0o600, &mut loose);
    inspect(key_file, 0o600, &mut loose);
    // Drafts sit in `drafts/<recipe>/`; their folders are inside the private state
    // directory, so only the files are checked.
    let mut files = Vec::new();
    draft_files(&state_dir.join("drafts"), 2, &mut files);
    files.sort();
    for file in &files {
        inspect(file, 0o600, &mut loose);
    }
    loose
}

fn draft_files(dir: &Path, depth: u8, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.is_file() {
            files.push(path);
        } else if path.is_dir() && depth > 1 {
            draft_files(&path, depth - 1, files);
        }
    }
}

fn inspect(path: &Path, expected: u32, loose: &mut Vec<Loose>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        loose.push(Loose {
            path: path.to_owned(),
            mode,
            expected,
        });
    }
}

/// Creates `path` (and missing parents) as a folder its owner alone can enter (0700),
/// or tightens an existing one to that: the cache holds job content wherever it lives.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes an existing file readable and writable by its owner alone (0600).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Writes `bytes` to `path` as a file only its owner can read (0600), replacing what
/// was there; an existing file's looser mode is tightened before the new content lands.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        private_file(path)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dirs_and_files_are_the_owners_alone_wherever_they_live() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("elsewhere/cache");
        private_dir(&cache).unwrap();
        assert_eq!(mode(&cache), 0o700);
        chmod(&cache, 0o755);
        private_dir(&cache).unwrap();
        assert_eq!(mode(&cache), 0o700);

        let file = cache.join("script.json");
        std::fs::write(&file, "{}").unwrap();
        chmod(&file, 0o644);
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);

        let report = dir.path().join("report.html");
        std::fs::write(&report, "old").unwrap();
        chmod(&report, 0o644);
        write_private(&report, b"new").unwrap();
        assert_eq!(mode(&report), 0o600);
        assert_eq!(std::fs::read_to_string(&report).unwrap(), "new");
        write_private(&dir.path().join("fresh.html"), b"x").unwrap();
        assert_eq!(mode(&dir.path().join("fresh.html")), 0o600);
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn reports_group_or_world_access_with_the_fixing_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("drafts").join("r")).unwrap();
        let db = state.join(crate::store::DB_FILE);
        let draft = state.join("drafts").join("r").join("a.mp4");
        let key = dir.path().join("secret.key");
        for f in [&db, &draft, &key] {
            std::fs::write(f, "x").unwrap();
            chmod(f, 0o600);
        }
        chmod(&state, 0o700);
        chmod(&state.join("drafts"), 0o755);
        assert_eq!(check(&state, &key), Vec::new());

        chmod(&state, 0o755);
        chmod(&draft, 0o644);
        chmod(&key, 0o640);
        let found = check(&state, &key);
        let paths: Vec<_> = found.iter().map(|l| l.path.clone()).collect();
        assert_eq!(paths, vec![state.clone(), key.clone(), draft.clone()]);
        assert_eq!(found[0].hint(), format!("chmod 700 '{}'", state.display()));
        assert_eq!(found[2].hint(), format!("chmod 600 '{}'", draft.display()));
        assert!(found[1].to_string().contains("mode 640, expected 600"));
    }

    #[test]
    fn missing_paths_are_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            check(&dir.path().join("none"), &dir.path().join("k")),
            Vec::new()
        );
    }
}
