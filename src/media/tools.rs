//! Finding the external programs the media code drives, and running them.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use super::MediaError;

/// The one command that installs everything this module needs on Debian and Ubuntu.
pub const INSTALL_HINT: &str =
    "sudo apt-get install -y ffmpeg espeak-ng fonts-dejavu-core fonts-noto-core fonts-noto-cjk";

/// How many stderr lines a failure keeps: enough for ffmpeg's actual complaint, which
/// comes last, without its whole banner.
const STDERR_TAIL_LINES: usize = 8;

/// Absolute paths of the programs, resolved once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    pub espeak: PathBuf,
}

/// One program that could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTool {
    pub name: &'static str,
    /// The environment variable that overrides where it is looked for.
    pub env: &'static str,
    /// What that variable was set to, when it was set.
    pub configured: Option<OsString>,
}

/// Every program that could not be found, so one run reports them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingTools {
    pub missing: Vec<MissingTool>,
}

impl fmt::Display for MissingTools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missing ")?;
        for (i, tool) in self.missing.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "`{}`", tool.name)?;
            if let Some(value) = &tool.configured {
                write!(
                    f,
                    " (`{}` is `{}`, which is not an executable)",
                    tool.env,
                    value.to_string_lossy()
                )?;
            }
        }
        write!(f, " — install with `{INSTALL_HINT}`")
    }
}

impl Tools {
    /// Looks each program up on `PATH`, unless `FACTORY_FFMPEG`, `FACTORY_FFPROBE` or
    /// `FACTORY_ESPEAK` names it (a path, or a name to look up on `PATH`).
    pub fn detect() -> Result<Self, MissingTools> {
        Self::detect_with(|key| std::env::var_os(key))
    }

    /// [`Tools::detect`] over any environment; tests use it instead of mutating the
    /// process environment.
    fn detect_with(env: impl Fn(&str) -> Option<OsString>) -> Result<Self, MissingTools> {
        let search_path = env("PATH");
        let mut missing = Vec::new();
        let mut find = |name: &'static str, key: &'static str| {
            let configured = env(key).filter(|value| !value.is_empty());
            let program = configured.as_deref().unwrap_or(OsStr::new(name));
            let found = locate(program, search_path.as_deref());
            if found.is_none() {
                missing.push(MissingTool {
                    name,
                    env: key,
                    configured,
                });
            }
            found
        };
        let ffmpeg = find("ffmpeg", "FACTORY_FFMPEG");
        let ffprobe = find("ffprobe", "FACTORY_FFPROBE");
        let espeak = find("espeak-ng", "FACTORY_ESPEAK");
        match (ffmpeg, ffprobe, espeak) {
            (Some(ffmpeg), Some(ffprobe), Some(espeak)) => Ok(Self {
                ffmpeg,
                ffprobe,
                espeak,
            }),
            _ => Err(MissingTools { missing }),
        }
    }
}

impl Tools {
    /// The versions that enter stage keys: the first line each tool prints of itself,
    /// and the caption font by file name and size.
    pub async fn versions(&self) -> crate::keys::ToolVersions {
        async fn first_line(program: &Path, flag: &str) -> String {
            run(program, [flag])
                .await
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(str::to_owned)
                })
                .unwrap_or_default()
        }
        let mut font = std::fs::metadata(CAPTION_FONT_FILE)
            .map(|m| format!("DejaVuSans-Bold.ttf {}", m.len()))
            .unwrap_or_default();
        font.push_str(&fallback_fonts().await);
        crate::keys::ToolVersions {
            ffmpeg: first_line(&self.ffmpeg, "-version").await,
            espeak: first_line(&self.espeak, "--version").await,
            font,
        }
    }
}

/// Languages whose letters the caption font lacks, so libass draws them from another
/// font that fontconfig finds: which one is part of how a caption looks.
const FALLBACK_LANGUAGES: [&str; 6] = ["ja", "zh-cn", "ko", "ar", "hi", "th"];

/// The fonts fontconfig falls back to for [`FALLBACK_LANGUAGES`], by file name and size,
/// each after `; `. Empty when fontconfig's tools are missing or only the caption font
/// answers, so a machine without fallback fonts keeps the keys it had.
async fn fallback_fonts() -> String {
    let mut files = std::collections::BTreeSet::new();
    for language in FALLBACK_LANGUAGES {
        let pattern = format!(":bold:lang={language}");
        if let Ok(out) = run(Path::new("fc-match"), ["-f", "%{file}", pattern.as_str()]).await {
            let file = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !file.is_empty() && file != CAPTION_FONT_FILE {
                files.insert(file);
            }
        }
    }
    files
        .into_iter()
        .map(|file| {
            let size = std::fs::metadata(&file).map_or(0, |m| m.len());
            let name = Path::new(&file)
                .file_name()
                .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
            format!("; {name} {size}")
        })
        .collect()
}

/// The font `scripts/install-deps` installs for captions.
const CAPTION_FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// A name with no directory part is searched on `search_path`; anything else is taken
/// as a path.
fn locate(program: &OsStr, search_path: Option<&OsStr>) -> Option<PathBuf> {
    let program = Path::new(program);
    if program.components().count() > 1 {
        return is_executable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(search_path?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// A child that outlives the engine renders into a work folder nobody reads:
/// `kill_on_drop` covers a cancelled job, the kernel covers a killed engine (SIGKILL to
/// the child the moment its parent dies).
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut tokio::process::Command) {}

/// Runs a program to completion and returns its output, or its stderr tail when it
/// fails. The child is killed if the returned future is dropped, so a cancelled job
/// leaves no ffmpeg behind.
pub(crate) async fn run<I, S>(program: &Path, args: I) -> Result<Output, MediaError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let tool = program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut command);
    let output = command.output().await.map_err(|source| MediaError::Spawn {
        tool: tool.clone(),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(MediaError::ToolFailed {
            tool,
            status: output.status.to_string(),
            stderr: stderr_tail(&output.stderr),
        })
    }
}

pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[start..].join("\n")
}

/// The way to name a local file to ffmpeg and ffprobe: the `file:` protocol stops a
/// name like `-x.mp4` or `http:x` from being read as an option or a URL.
pub(crate) fn media_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path.as_os_str());
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `scripts/install-deps` installs the Noto fonts captions in other scripts fall
    /// back to; which ones are in the caption keys, so installing or updating them
    /// draws captions again instead of reusing ones drawn with missing glyphs.
    #[tokio::test]
    async fn the_fallback_fonts_are_part_of_the_caption_font_version() {
        let font = super::super::testing::tools().versions().await.font;
        assert!(font.starts_with("DejaVuSans-Bold.ttf "), "{font}");
        assert!(font.contains("; NotoSansCJK-Bold.ttc "), "{font}");
        assert!(font.contains("; NotoSansDevanagari-Bold.ttf "), "{font}");
        assert_eq!(
            font,
            fallback_free(&font) + &fallback_fonts().await,
            "stable"
        );
    }

    fn fallback_free(font: &str) -> String {
        font.split("; ").next().unwrap_or_default().to_owned()
    }

    fn env_from(pairs: Vec<(&'static str, OsString)>) -> impl Fn(&str) -> Option<OsString> {
        move |key| {
            pairs
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn finds_the_installed_tools_on_path() {
        let tools = Tools::detect().expect("ffmpeg, ffprobe and espeak-ng are installed");
        assert!(tools.ffmpeg.is_absolute() && tools.ffmpeg.ends_with("ffmpeg"));
        assert!(tools.ffprobe.ends_with("ffprobe"));
        assert!(tools.espeak.ends_with("espeak-ng"));
    }

    #[test]
    fn an_empty_path_reports_every_tool_with_the_install_hint() {
        let error = Tools::detect_with(env_from(vec![("PATH", OsString::new())])).unwrap_err();
        let names: Vec<_> = error.missing.iter().map(|tool| tool.name).collect();
        assert_eq!(names, ["ffmpeg", "ffprobe", "espeak-ng"]);
        let message = error.to_string();
        assert!(
            message.contains("`ffmpeg`, `ffprobe`, `espeak-ng`"),
            "{message}"
        );
        assert!(
            message.ends_with(&format!("install with `{INSTALL_HINT}`")),
            "{message}"
        );
    }

    #[test]
    fn an_override_wins_over_path_and_a_bad_one_is_named() {
        let path = std::env::var_os("PATH").expect("PATH is set");
        let ffmpeg = Tools::detect().expect("tools are installed").ffmpeg;
        let env = env_from(vec![
            ("PATH", path),
            // Any executable will do: the override is taken as given.
            ("FACTORY_FFPROBE", ffmpeg.clone().into_os_string()),
            ("FACTORY_ESPEAK", OsString::from("/nonexistent/espeak-ng")),
        ]);
        let error = Tools::detect_with(&env).unwrap_err();
        assert_eq!(error.missing.len(), 1);
        assert_eq!(error.missing[0].env, "FACTORY_ESPEAK");
        assert!(
            error
                .to_string()
                .contains("`FACTORY_ESPEAK` is `/nonexistent/espeak-ng`"),
            "{error}"
        );

        let env = env_from(vec![
            ("PATH", OsString::new()),
            ("FACTORY_FFMPEG", ffmpeg.clone().into_os_string()),
            ("FACTORY_FFPROBE", ffmpeg.clone().into_os_string()),
            ("FACTORY_ESPEAK", ffmpeg.clone().into_os_string()),
        ]);
        let tools = Tools::detect_with(env).expect("overrides need no PATH");
        assert_eq!(tools.ffprobe, ffmpeg);
    }

    #[test]
    fn a_bare_override_name_is_looked_up_on_path() {
        let path = std::env::var_os("PATH").expect("PATH is set");
        let env = env_from(vec![
            ("PATH", path),
            ("FACTORY_FFPROBE", OsString::from("ffmpeg")),
        ]);
        let tools = Tools::detect_with(env).expect("ffmpeg is on PATH");
        assert!(tools.ffprobe.ends_with("ffmpeg"));
    }

    #[tokio::test]
    async fn a_failing_tool_reports_its_stderr_tail() {
        let tools = Tools::detect().expect("tools are installed");
        let error = run(
            &tools.ffmpeg,
            ["-hide_banner", "-i", "/nonexistent/input.mp4"],
        )
        .await
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("`ffmpeg` failed (exit status: 1)"),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
    }
}
