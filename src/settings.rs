//! `config.yaml`: what a bare `fleetctx sync` scans. Flags given on the command
//! line replace the matching settings; the result is plain values (`SyncOptions`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub gke: Option<GkeSettings>,
    #[serde(default)]
    pub eks: Option<EksSettings>,
    pub kubeconfig: Option<PathBuf>,
    pub name_template: Option<String>,
    pub exec_command: Option<String>,
    pub concurrency: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GkeSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub all_projects: bool,
    pub endpoint: Option<crate::gke::Endpoint>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EksSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `$XDG_CONFIG_HOME/fleetctx/config.yaml`, else the platform's config directory.
pub fn default_path() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(xdg) if xdg.is_absolute() => Some(xdg.join("fleetctx").join("config.yaml")),
        _ => directories::ProjectDirs::from("", "", "fleetctx")
            .map(|d| d.config_dir().join("config.yaml")),
    }
}

impl Settings {
    /// Reads the settings file. The default file may be absent; one named with
    /// `--config` must exist.
    pub fn load(explicit: Option<&Path>) -> Result<Settings> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match default_path() {
                Some(p) if p.exists() => p,
                _ => return Ok(Settings::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(format!("could not read settings file {}", path.display())).cause(e)
        })?;
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        let mut settings: Settings = yaml_serde::from_str(&text).map_err(|e| {
            Error::new(format!("settings file {} is not valid", path.display()))
                .because(e.to_string())
                .hint("see the README's `config.yaml` section for the keys fleetctx reads")
        })?;
        settings.kubeconfig = settings
            .kubeconfig
            .map(|p| expand_home(&p.to_string_lossy()).into());
        settings.exec_command = settings.exec_command.map(|c| expand_home(&c));
        Ok(settings)
    }
}

/// `~`, `~/...`, `$HOME` and `${HOME}` at the start of a path mean the home
/// directory, as they do in a shell (config.yaml is read by no shell).
pub fn expand_home(path: &str) -> String {
    let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().display().to_string())
    else {
        return path.to_string();
    };
    for prefix in ["~", "${HOME}", "$HOME"] {
        if let Some(rest) = path.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{home}{rest}");
        }
    }
    path.to_string()
}
