//! Paths in the store, and the rule that deletion stays at home.
//!
//! The store records local files (drafts, hosted copies) relative to the state
//! directory, so a copied state directory (`cp -a A B`, a CI cache restored elsewhere)
//! points at its own files. Older stores hold absolute paths; [`resolve`] still reads
//! them, and [`Places::deletable`] lets `gc` and `purge` delete only inside their own
//! state and cache directories: anything else is left alone and reported.

use std::path::{Component, Path, PathBuf};

/// Folders of the state directory whose files the store records.
const RECORDED_FOLDERS: [&str; 2] = ["drafts", "hosted"];

/// Where a stored path points. A relative one is inside `state_dir`. An absolute one
/// (older stores) is used as it is when it lies in `state_dir`; otherwise, when it names
/// a file under a `drafts/` or `hosted/` folder, it is read as that file of *this*
/// state directory (the store was copied from elsewhere). Anything else stays as
/// stored, for [`Places::deletable`] to refuse.
pub fn resolve(state_dir: &Path, stored: &str) -> PathBuf {
    let path = Path::new(stored);
    if path.is_relative() {
        return state_dir.join(path);
    }
    if inside(&real(state_dir), &real_parent(path)) {
        return path.to_owned();
    }
    let components: Vec<Component<'_>> = path.components().collect();
    let folder = components.iter().rposition(
        |c| matches!(c, Component::Normal(name) if RECORDED_FOLDERS.iter().any(|f| name == f)),
    );
    match folder {
        Some(at) if at + 1 < components.len() => {
            let tail: PathBuf = components[at..].iter().collect();
            state_dir.join(tail)
        }
        _ => path.to_owned(),
    }
}

/// The form in which to record a local file: relative to `state_dir` when inside it,
/// otherwise the path as given.
pub fn to_stored(state_dir: &Path, path: &Path) -> String {
    let target = real_parent(path);
    let state = real(state_dir);
    match target.strip_prefix(&state) {
        Ok(rest) if inside(&state, &target) => rest.to_string_lossy().into_owned(),
        _ => path.to_string_lossy().into_owned(),
    }
}

/// The two directories `gc` and `purge` may delete in.
#[derive(Debug, Clone)]
pub struct Places {
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
}

/// A path `gc` or `purge` refused to delete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("left `{}` alone: it is outside the state directory `{}` and the cache `{}`", path.display(), state_dir.display(), cache_dir.display())]
pub struct Outside {
    pub path: PathBuf,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl Places {
    /// `cache_dir` defaults to `STATE_DIR/cache`.
    pub fn new(state_dir: &Path, cache_dir: Option<&Path>) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
            cache_dir: cache_dir.map_or_else(|| state_dir.join("cache"), Path::to_owned),
        }
    }

    /// `path` when deleting it stays strictly inside the state or cache directory. The
    /// check resolves links in the parent folders, so a link that leads out does not
    /// count as inside; the last component itself is not followed (removing a link
    /// removes the link).
    pub fn deletable(&self, path: &Path) -> Result<PathBuf, Outside> {
        let target = real_parent(path);
        let at_home = [&self.state_dir, &self.cache_dir]
            .iter()
            .any(|root| inside(&real(root), &target));
        if at_home {
            Ok(path.to_owned())
        } else {
            Err(Outside {
                path: path.to_owned(),
                state_dir: self.state_dir.clone(),
                cache_dir: self.cache_dir.clone(),
            })
        }
    }
}

/// Whether `path` is strictly below `root` (both already resolved).
fn inside(root: &Path, path: &Path) -> bool {
    path != root && path.starts_with(root) && !root.as_os_str().is_empty()
}

/// The absolute form of `path` with links resolved as far as it exists.
fn real(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => real(parent).join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
    }
}

/// [`real`] of the parent, joined with the last component as written: the path that
/// deleting `path` touches. A path ending in `..` or `.` is resolved whole.
fn real_parent(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => real(parent).join(name),
        (_, Some(name)) => real(Path::new(".")).join(name),
        _ => real(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_inside_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("b");
        assert_eq!(
            resolve(&state, "drafts/r/1.mp4"),
            state.join("drafts/r/1.mp4")
        );
        std::fs::create_dir_all(state.join("drafts/r")).unwrap();
        assert_eq!(
            to_stored(&state, &state.join("drafts/r/1.mp4")),
            "drafts/r/1.mp4"
        );
        assert_eq!(to_stored(&state, Path::new("/elsewhere/x")), "/elsewhere/x");
    }

    #[test]
    fn an_absolute_path_of_a_copied_store_is_read_as_this_state_directorys_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(a.join("hosted/r")).unwrap();
        std::fs::create_dir_all(b.join("hosted/r")).unwrap();
        let in_a = a.canonicalize().unwrap().join("hosted/r/1.mp4");
        assert_eq!(resolve(&a, in_a.to_str().unwrap()), in_a);
        assert_eq!(
            resolve(&b, in_a.to_str().unwrap()),
            b.join("hosted/r/1.mp4")
        );
        assert_eq!(resolve(&b, "/etc/passwd"), PathBuf::from("/etc/passwd"));
    }

    #[test]
    fn deletion_outside_the_state_and_cache_directories_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let cache = dir.path().join("elsewhere-cache");
        std::fs::create_dir_all(state.join("drafts")).unwrap();
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        let places = Places::new(&state, Some(&cache));
        assert!(places.deletable(&state.join("drafts/x.mp4")).is_ok());
        assert!(places.deletable(&cache.join("render/k")).is_ok());
        for refused in [
            dir.path().join("outside/x.mp4"),
            state.join("../outside/x.mp4"),
            state.join("drafts/../../outside/x.mp4"),
            state.clone(),
            cache.clone(),
            PathBuf::from("/etc/passwd"),
        ] {
            let err = places.deletable(&refused).unwrap_err();
            assert!(err.to_string().starts_with("left `"), "{err}");
        }
        // A folder link inside the state directory that leads out is outside.
        std::os::unix::fs::symlink(dir.path().join("outside"), state.join("drafts/link")).unwrap();
        assert!(places.deletable(&state.join("drafts/link/x.mp4")).is_err());
    }
}
